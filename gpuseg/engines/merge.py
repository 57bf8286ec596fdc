"""Merging identical feature rows into one weighted sample each.

DBSCAN with ``sample_weight`` counts a point as core when the weight in its eps-ball reaches min_samples, so
identical rows can be merged into one row whose weight is their sum: every copy has the same ball, the same
core status and the same label. Merged rows keep the order of their first occurrence, so clusters keep
scikit-learn's numbering (by smallest core index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from gpuseg.features import Features

DENSE_KEY_BITS = 26
"""Packed keys below 2**DENSE_KEY_BITS (8-bit RGB, grey) are merged with a table instead of a sort."""


@dataclass(frozen=True)
class MergedRows:
    """``points[inverse]`` gives back the input rows; ``weights`` sums the input weights of each row."""

    points: np.ndarray
    weights: np.ndarray
    inverse: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.points.shape[0]


def merge_rows(features: Features, weights: np.ndarray | None = None) -> MergedRows:
    """Merge the identical rows of ``features.matrix()`` (without building it for packed colour codes)."""
    codes = _packable_codes(features)
    if codes is not None:
        key, bits = _pack(codes)
        if bits <= DENSE_KEY_BITS:
            first, inverse = _merge_dense(key, 1 << bits)
        else:
            first, inverse = _merge_sorted(key)
        points = features.lut[codes[first]]
    else:
        matrix = features.matrix()
        rows = np.ascontiguousarray(matrix + 0.0)  # +0.0 turns -0.0 into 0.0, so equal values share bytes
        first, inverse = _merge_sorted(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel())
        points = matrix[first]
    merged_weights = np.bincount(inverse, weights=weights, minlength=first.shape[0]).astype(np.float64)
    return MergedRows(points=np.ascontiguousarray(points), weights=merged_weights, inverse=inverse)


def _packable_codes(features: Features) -> np.ndarray | None:
    """(N, K) integer colour codes of the samples when the rows are colours alone and pack into 64 bits."""
    if not features.is_image or features.lut is None or features.xy_scale is not None:
        return None
    colours = features.colours
    if colours.dtype.itemsize * 8 * colours.shape[2] > 64:
        return None
    flat = colours.reshape(-1, colours.shape[2])
    return flat[features.mask.ravel()] if features.mask is not None else flat


def _pack(codes: np.ndarray) -> tuple[np.ndarray, int]:
    width = codes.dtype.itemsize * 8
    key = np.zeros(codes.shape[0], dtype=np.uint64)
    for k in range(codes.shape[1]):
        key |= codes[:, k].astype(np.uint64) << np.uint64(width * k)
    return key, width * codes.shape[1]


def _merge_sorted(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first occurrence of each distinct key in order of appearance, inverse) by sorting."""
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    return first[order], rank[inverse.ravel()]


@njit(cache=True)
def _merge_dense(key, n_bins):
    """The same as ``_merge_sorted`` for small integer keys, in one pass with a table."""
    slot = np.full(n_bins, -1, dtype=np.int64)
    inverse = np.empty(key.shape[0], dtype=np.int64)
    first = np.empty(key.shape[0], dtype=np.int64)
    m = 0
    for i in range(key.shape[0]):
        k = key[i]
        if slot[k] < 0:
            slot[k] = m
            first[m] = i
            m += 1
        inverse[i] = slot[k]
    return first[:m].copy(), inverse
