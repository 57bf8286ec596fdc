"""Choosing eps: the k-distance curve of the pixel features and its knee."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from gpuseg.features import AlphaMode, ColorSpace, build_features

SAMPLE_SIZE = 200_000
"""Pixels the neighbours are searched among (all of them in smaller images)."""
QUERY_SIZE = 5_000
"""Pixels whose k-distance makes the curve."""


@dataclass(frozen=True)
class EpsSuggestion:
    """A suggested eps: the knee of the sorted k-distances of ``QUERY_SIZE`` random pixels.

    ``k_distances`` is the sorted curve, ``knee`` its index, ``radius_px`` the stencil radius in pixels that
    eps implies with position features (None for colour only).
    """

    eps: float
    min_samples: int
    k_distances: np.ndarray
    knee: int
    n_samples: int
    sample_size: int
    neighbours_in_sample: int
    xy_scale: float | None
    radius_px: int | None


def suggest_eps(
    image: np.ndarray,
    *,
    min_samples: int = 20,
    color: ColorSpace = "lab",
    alpha: AlphaMode = "ignore",
    xy_scale: float | None = 0.01,
    seed: int = 0,
) -> EpsSuggestion:
    """Suggest eps for an image and ``min_samples``: the knee of its k-distance curve.

    The k-distance of a pixel is the distance within which it has ``min_samples`` samples (itself
    included), the eps at which it becomes a core pixel. Sorted, those distances rise slowly through the
    dense regions and steeply at the edges and the noise; the knee, the point of the curve farthest below
    the straight line from its first to its last point, separates the two.

    For speed on large images, neighbours are searched among a random sample of ``SAMPLE_SIZE`` pixels
    (all pixels below that) and the neighbour count scaled by the sampling fraction, for ``QUERY_SIZE``
    random pixels of that sample; the same ``seed`` gives the same answer.

    Parameters
    ----------
    image : ndarray
        As for :func:`gpuseg.segment`.
    min_samples : int
        The min_samples the segmentation will use (k).
    color, alpha, xy_scale
        The features, as for :func:`gpuseg.segment`.
    seed : int
        Seed of the random samples.

    Returns
    -------
    EpsSuggestion

    Raises
    ------
    ValueError
        A bad ``min_samples`` or feature option, or an image with fewer than 2 samples.
    """
    from sklearn.neighbors import NearestNeighbors

    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise ValueError(f"min_samples={min_samples!r} must be an integer >= 1")
    features = build_features(image, color=color, alpha=alpha, xy_scale=xy_scale)
    n = features.n_samples
    if n < 2:
        raise ValueError(f"the image has {n} sample(s); a k-distance curve needs at least 2")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, SAMPLE_SIZE, replace=False)) if n > SAMPLE_SIZE else np.arange(n)
    points = features.matrix(sample)
    queries = points[rng.choice(points.shape[0], QUERY_SIZE, replace=False)] if len(sample) > QUERY_SIZE else points
    k = min(max(2, round(min_samples * len(sample) / n)), len(sample))
    model = NearestNeighbors(n_neighbors=k, n_jobs=os.cpu_count()).fit(points)
    distances = np.sort(model.kneighbors(queries)[0][:, -1])
    knee = knee_index(distances)
    eps = float(distances[knee])
    if eps <= 0:  # flat images: every k-distance is 0 up to the knee
        eps = float(distances[distances > 0][0]) if (distances > 0).any() else 1e-6
    radius = None if features.xy_scale is None else int(math.floor(eps / features.xy_scale))
    return EpsSuggestion(eps, min_samples, distances, knee, n, len(sample), k, features.xy_scale, radius)


def knee_index(curve: np.ndarray) -> int:
    """Index of the point of an ascending curve farthest below the chord from its first to its last point."""
    if curve.shape[0] < 3 or curve[-1] == curve[0]:
        return curve.shape[0] - 1
    x = np.linspace(0.0, 1.0, curve.shape[0])
    y = (curve - curve[0]) / (curve[-1] - curve[0])
    return int(np.argmax(x - y))


def plot_k_distances(suggestion: EpsSuggestion, path) -> None:
    """A PNG of the sorted k-distances with the knee and the suggested eps marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = suggestion.k_distances
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(np.arange(d.shape[0]), d, lw=1.5, label=f"{suggestion.min_samples}-distance of each sampled pixel")
    ax.axhline(suggestion.eps, color="tab:red", lw=1, ls="--", label=f"suggested eps = {suggestion.eps:.4g}")
    ax.plot([suggestion.knee], [d[suggestion.knee]], "o", color="tab:red")
    ax.set_xlabel("pixels, sorted by k-distance")
    ax.set_ylabel(f"distance to the {suggestion.min_samples}th neighbour (feature units)")
    title = f"{suggestion.n_samples:,} samples, curve of {d.shape[0]:,} pixels"
    if suggestion.radius_px is not None:
        title += f"; stencil radius {suggestion.radius_px} px"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from gpuseg.io import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), overwrite=True)
    plt.close(fig)
