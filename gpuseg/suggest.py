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

    The curve is made of ``QUERY_SIZE`` random pixels (all of them in smaller images). With position
    features their neighbours are searched in a window of the pixel grid around each (exact up to the
    window's reach, see :func:`grid_k_distances`); with colour alone, among a random sample of
    ``SAMPLE_SIZE`` pixels, the neighbour count scaled by the sampling fraction. The same ``seed`` gives the
    same answer.

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
    if features.xy_scale is not None:  # neighbours lie on the pixel grid: search a window, no subsampling
        queries = np.sort(rng.choice(n, min(n, QUERY_SIZE), replace=False))
        distances, sample_size, k = grid_k_distances(features, queries, min_samples), n, min_samples
    else:
        sample = np.sort(rng.choice(n, SAMPLE_SIZE, replace=False)) if n > SAMPLE_SIZE else np.arange(n)
        points = features.matrix(sample)
        picked = rng.choice(len(sample), QUERY_SIZE, replace=False) if len(sample) > QUERY_SIZE else slice(None)
        k = min(max(2, round(min_samples * len(sample) / n)), len(sample))
        model = NearestNeighbors(n_neighbors=k, n_jobs=os.cpu_count()).fit(points)
        distances = np.sort(model.kneighbors(points[picked])[0][:, -1])
        sample_size = len(sample)
    knee = knee_index(distances)
    eps = float(distances[knee])
    if eps <= 0:  # flat images: every k-distance is 0 up to the knee
        eps = float(distances[distances > 0][0]) if (distances > 0).any() else 1e-6
    radius = None if features.xy_scale is None else int(math.floor(eps / features.xy_scale))
    return EpsSuggestion(eps, min_samples, distances, knee, n, sample_size, k, features.xy_scale, radius)


WINDOW_RADIUS = 8
"""Half-width in pixels of the window searched for a pixel's k nearest neighbours with position features."""


def grid_k_distances(features, queries: np.ndarray, k: int) -> np.ndarray:
    """Sorted k-distances of the sample pixels ``queries``, searching the (2R+1)^2 window of pixels around
    each (R = ``WINDOW_RADIUS``, widened to hold k pixels). A pixel outside the window is more than
    (R+1)·xy_scale away, so a k-distance below that is exact; larger ones are capped there."""
    h, w = features.shape
    radius = max(WINDOW_RADIUS, int(np.ceil(np.sqrt(k))))
    dy, dx = (a.ravel() for a in np.mgrid[-radius : radius + 1, -radius : radius + 1])
    pixels = np.arange(h * w) if features.mask is None else np.flatnonzero(features.mask.ravel())
    y, x = np.divmod(pixels[queries], w)
    yy, xx = y[:, None] + dy[None, :], x[:, None] + dx[None, :]
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    yy, xx = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
    if features.mask is not None:
        inside &= features.mask[yy, xx]
    codes = features.colors
    values = (lambda c: features.lut[c]) if features.lut is not None else (lambda c: c.astype(np.float64))
    d2 = ((values(codes[yy, xx]) - values(codes[y, x])[:, None, :]) ** 2).sum(axis=2)
    d2 += ((dx * features.xy_scale) ** 2 + (dy * features.xy_scale) ** 2)[None, :]
    d2[~inside] = np.inf
    kth = np.sqrt(np.partition(d2, min(k, d2.shape[1]) - 1, axis=1)[:, min(k, d2.shape[1]) - 1])
    return np.sort(np.minimum(kth, (radius + 1) * features.xy_scale))


def knee_index(curve: np.ndarray) -> int:
    """Index of the point of an ascending curve farthest below the chord from its first to its last point."""
    if curve.shape[0] < 3 or curve[-1] == curve[0]:
        return curve.shape[0] - 1
    x = np.linspace(0.0, 1.0, curve.shape[0])
    y = (curve - curve[0]) / (curve[-1] - curve[0])
    return int(np.argmax(x - y))


def plot_k_distances(suggestion: EpsSuggestion, path, *, overwrite: bool = False) -> None:
    """Write a PNG of the sorted k-distances with the knee and the suggested eps marked (atomically; an
    existing file is replaced only with ``overwrite``)."""
    from matplotlib.figure import Figure  # no pyplot: the host application's backend is left alone

    from gpuseg.io import atomic_write

    d = suggestion.k_distances
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
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
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), overwrite=overwrite)
