"""k-distance curves: for a sample of pixels, the distance within which each has k samples, and the curve's knee."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

SAMPLE_SIZE = 200_000
"""Pixels the neighbours are searched among (all of them in smaller images)."""
QUERY_SIZE = 5_000
"""Pixels whose k-distance makes the curve."""


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
