"""Choosing eps: the k-distance curve of the pixel features and its knee."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import numpy as np

from gpuseg.cluster import cluster_features
from gpuseg.eps_search import check_target_noise
from gpuseg.features import AlphaMode, ColorSpace, build_features
from gpuseg.report import GIANT_CLUSTER

SAMPLE_SIZE = 200_000
"""Pixels the neighbours are searched among (all of them in smaller images)."""
QUERY_SIZE = 5_000
"""Pixels whose k-distance makes the curve."""
CAPPED_WARNING = 0.05
"""Warn when more than this share of the curve sits at the search window's cap."""
KNEE_SLACK = 0.05
"""The knee is recommended when its noise fraction is at most the target's plus this (and no cluster holds
more than ``GIANT_CLUSTER``)."""


@dataclass(frozen=True)
class EpsSuggestion:
    """A suggested eps: the knee of the sorted k-distances of ``QUERY_SIZE`` random pixels, or the eps for a
    target noise fraction, whichever is recommended.

    ``k_distances`` is the sorted curve, ``knee`` its index and ``knee_eps`` its value, ``radius_px`` the
    stencil radius in pixels that ``eps`` implies with position features (None for colour only). With a
    ``target_noise``, DBSCAN ran on the image: ``knee_noise`` and ``knee_largest_cluster`` are the noise
    fraction and the largest cluster's share at the knee, ``target_eps`` (found in ``search_runs`` runs),
    ``target_noise_fraction`` and ``target_largest_cluster`` the same for the target, and ``recommended``
    ("knee" or "target") says which one ``eps`` is. ``warnings`` says what to mistrust.
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
    knee_eps: float = 0.0
    capped_fraction: float = 0.0
    knee_noise: float | None = None
    knee_largest_cluster: float | None = None
    target_noise: float | None = None
    target_eps: float | None = None
    target_noise_fraction: float | None = None
    target_largest_cluster: float | None = None
    recommended: str = "knee"
    search_runs: int = 0
    warnings: tuple[str, ...] = ()


def suggest_eps(
    image: np.ndarray,
    *,
    min_samples: int = 20,
    color: ColorSpace = "lab",
    alpha: AlphaMode = "ignore",
    xy_scale: float | None = 0.01,
    seed: int = 0,
    target_noise: float | None = None,
    device: str = "auto",
    engine: str = "auto",
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

    With ``target_noise``, DBSCAN also runs on the image: at the knee, and in a search for the eps whose
    noise fraction is closest to the target (see :func:`gpuseg.eps_search.search_eps`). The knee is
    recommended when its noise is at most the target + ``KNEE_SLACK`` and no cluster holds more than
    ``GIANT_CLUSTER`` of the samples; otherwise the target's eps is. With colour alone, an eps at which one
    cluster holds more than ``GIANT_CLUSTER`` is lowered until none does (DBSCAN chains a photo's smooth
    gradients through colour space into one cluster).

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
    target_noise : float, optional
        A noise fraction in [0, 1) to find eps for, beside the knee.
    device, engine
        Where the DBSCAN runs of ``target_noise`` go (see :func:`gpuseg.dbscan`).

    Returns
    -------
    EpsSuggestion

    Raises
    ------
    ValueError
        A bad ``min_samples``, ``target_noise`` or feature option, or an image with fewer than 2 samples.
    """
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise ValueError(f"min_samples={min_samples!r} must be an integer >= 1")
    if target_noise is not None:
        target_noise = check_target_noise(target_noise)
    features = build_features(image, color=color, alpha=alpha, xy_scale=xy_scale)
    curve = k_distances(features, min_samples, seed)
    distances = curve.distances
    knee = knee_index(distances)
    knee_eps = float(distances[knee])
    if knee_eps <= 0:  # flat images: every k-distance is 0 up to the knee
        knee_eps = float(distances[distances > 0][0]) if (distances > 0).any() else 1e-6
    warnings = []
    if curve.capped_fraction > CAPPED_WARNING:
        warnings.append(
            f"{curve.capped_fraction:.0%} of the sampled pixels have fewer than min_samples={min_samples} "
            f"neighbours within {curve.cap:.4g} (the search window, {curve.window_px} px): their k-distances "
            "are capped there, so the curve's top is flat; a larger xy_scale or a smaller min_samples fits "
            "this image better"
        )
    suggestion = EpsSuggestion(
        knee_eps, min_samples, distances, knee, features.n_samples, curve.sample_size, curve.k,
        features.xy_scale, _radius(knee_eps, features.xy_scale), knee_eps=knee_eps,
        capped_fraction=curve.capped_fraction, warnings=tuple(warnings),
    )  # fmt: skip
    if target_noise is None:
        return suggestion
    return _with_target(suggestion, features, target_noise, device=device, engine=engine, seed=seed)


def _radius(eps: float, xy_scale: float | None) -> int | None:
    return None if xy_scale is None else int(math.floor(eps / xy_scale))


def _with_target(s: EpsSuggestion, features, target_noise: float, *, device: str, engine: str, seed: int):
    """The suggestion with the eps for ``target_noise`` beside the knee, and the one recommended."""
    from gpuseg.eps_search import search_eps, start_eps

    knee_run = cluster_features(features, eps=s.knee_eps, min_samples=s.min_samples, device=device, engine=engine)
    knee_noise, knee_largest = _noise_and_largest(knee_run.labels)
    start, cap = start_eps(features, target_noise, s.min_samples, seed)
    search = search_eps(
        features, target_noise=target_noise, min_samples=s.min_samples, start=start, max_eps=cap,
        device=device, engine=engine,
    )  # fmt: skip
    eps, noise, largest = search.eps, search.noise_fraction, _noise_and_largest(search.run.labels)[1]
    warnings = list(s.warnings)
    if features.xy_scale is None and largest > GIANT_CLUSTER:  # colour only: step down until no cluster holds it all
        for _ in range(6):
            lower = eps / 1.5
            noise_l, largest_l = _noise_and_largest(
                cluster_features(features, eps=lower, min_samples=s.min_samples, device=device, engine=engine).labels
            )
            eps, noise, largest = lower, noise_l, largest_l
            if largest <= GIANT_CLUSTER:
                break
        warnings.append(
            f"colour only: at the eps for {target_noise:.0%} noise one cluster held more than "
            f"{GIANT_CLUSTER:.0%} of the pixels, so eps was lowered to {eps:.4g} ({noise:.0%} noise; "
            "--noise fill gives those pixels the nearest cluster)"
        )
    knee_usable = knee_noise <= target_noise + KNEE_SLACK and knee_largest <= GIANT_CLUSTER
    recommended = "knee" if knee_usable else "target"
    chosen = s.knee_eps if knee_usable else eps
    return replace(
        s, eps=chosen, radius_px=_radius(chosen, features.xy_scale), knee_noise=knee_noise,
        knee_largest_cluster=knee_largest, target_noise=target_noise, target_eps=eps,
        target_noise_fraction=noise, target_largest_cluster=largest, recommended=recommended,
        search_runs=len(search.tried), warnings=tuple(warnings),
    )  # fmt: skip


def _noise_and_largest(labels: np.ndarray) -> tuple[float, float]:
    """Noise fraction and the fraction of samples in the largest cluster."""
    n = labels.shape[0]
    if n == 0:
        return 0.0, 0.0
    clustered = labels[labels >= 0]
    largest = int(np.bincount(clustered).max()) if clustered.size else 0
    return float((labels < 0).sum() / n), largest / n


@dataclass(frozen=True)
class KDistances:
    """The sorted k-distances of a sample of pixels: the curve, the pixels they were searched among
    (``sample_size``), the k used there, and the share of the curve at the search's ``cap`` (position
    features: pixels without k neighbours within ``window_px`` pixels; None and 0 for colour only)."""

    distances: np.ndarray
    sample_size: int
    k: int
    capped_fraction: float = 0.0
    cap: float | None = None
    window_px: int | None = None


def k_distances(features, min_samples: int, seed: int = 0) -> KDistances:
    """The k-distance curve of ``QUERY_SIZE`` random samples of ``features`` (see :func:`suggest_eps`)."""
    from sklearn.neighbors import NearestNeighbors

    n = features.n_samples
    if n < 2:
        raise ValueError(f"the image has {n} sample(s); a k-distance curve needs at least 2")
    rng = np.random.default_rng(seed)
    if features.xy_scale is not None:  # neighbours lie on the pixel grid: search a window, no subsampling
        queries = np.sort(rng.choice(n, min(n, QUERY_SIZE), replace=False))
        distances = grid_k_distances(features, queries, min_samples)
        window = window_radius(min_samples)
        cap = (window + 1) * features.xy_scale
        return KDistances(distances, n, min_samples, float((distances >= cap).mean()), cap, window)
    sample = np.sort(rng.choice(n, SAMPLE_SIZE, replace=False)) if n > SAMPLE_SIZE else np.arange(n)
    points = features.matrix(sample)
    picked = rng.choice(len(sample), QUERY_SIZE, replace=False) if len(sample) > QUERY_SIZE else slice(None)
    k = min(max(2, round(min_samples * len(sample) / n)), len(sample))
    model = NearestNeighbors(n_neighbors=k, n_jobs=os.cpu_count()).fit(points)
    return KDistances(np.sort(model.kneighbors(points[picked])[0][:, -1]), len(sample), k)


def window_radius(k: int) -> int:
    """Half-width of the window searched for k neighbours: ``WINDOW_RADIUS``, widened to hold k pixels."""
    return max(WINDOW_RADIUS, int(np.ceil(np.sqrt(k))))


WINDOW_RADIUS = 8
"""Half-width in pixels of the window searched for a pixel's k nearest neighbours with position features."""


def grid_k_distances(features, queries: np.ndarray, k: int) -> np.ndarray:
    """Sorted k-distances of the sample pixels ``queries``, searching the (2R+1)^2 window of pixels around
    each (R = ``WINDOW_RADIUS``, widened to hold k pixels). A pixel outside the window is more than
    (R+1)·xy_scale away, so a k-distance below that is exact; larger ones are capped there."""
    h, w = features.shape
    radius = window_radius(k)
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
