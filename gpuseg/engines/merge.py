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

from gpuseg._core.arrays import to_host
from gpuseg.features import Features

DENSE_KEY_BITS = 26
"""On a GPU, packed keys below 2**DENSE_KEY_BITS (8-bit RGB, grey) are merged with a table instead of a sort,
when there are enough rows (at least an eighth of the table) for the table to be the faster way. On the CPU
every packed key is merged with a hash table."""


@dataclass(frozen=True)
class MergedRows:
    """``points[inverse]`` gives back the input rows; ``weights`` sums the input weights of each row."""

    points: np.ndarray
    weights: np.ndarray
    inverse: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.points.shape[0]


def merge_rows(features: Features, weights=None, xp=np) -> MergedRows:
    """Merge the identical rows of ``features.matrix()`` (without building it for packed colour codes).

    ``xp`` is the array module of the features' arrays (NumPy, or CuPy for features on a GPU).
    """
    codes = packable_codes(features)
    if codes is not None and features.lut is not None:  # (packable codes have a table)
        key, bits = pack_codes(codes, xp)
        if xp is np and key.shape[0] < 2**31:  # the hash table holds int32 row numbers
            first, inverse = merge_hashed(key)
        elif bits <= DENSE_KEY_BITS and key.shape[0] * 8 >= 1 << bits:
            first, inverse = merge_dense(key, 1 << bits, xp)
        else:
            first, inverse = merge_sorted(key, xp)
        points = features.lut[codes[first]]
    elif xp is not np:  # rows of floats: merged on the host, where rows can be compared as bytes
        host = merge_rows(features.map_arrays(to_host), None if weights is None else to_host(weights))
        return MergedRows(xp.asarray(host.points), xp.asarray(host.weights), xp.asarray(host.inverse))
    else:
        matrix = features.matrix()
        rows = np.ascontiguousarray(matrix + 0.0)  # +0.0 turns -0.0 into 0.0, so equal values share bytes
        first, inverse = merge_sorted(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel())
        points = matrix[first]
    merged_weights = summed_weights(inverse, weights, first.shape[0], xp)
    return MergedRows(points=xp.ascontiguousarray(points), weights=merged_weights, inverse=inverse)


def summed_weights(inverse, weights, n_rows: int, xp=np):
    """The weight of each merged row: the count of its copies, or the sum of their weights added in input
    order (NumPy's bincount does so; on a GPU, where bincount adds with atomics in any order, the copies are
    sorted stably and added one by one), so that CPU and GPU runs give the same sums, every time."""
    if weights is None:
        return xp.bincount(inverse, minlength=n_rows).astype(xp.float64)  # integer counts: exact
    if xp is np:
        return np.bincount(inverse, weights=weights, minlength=n_rows)
    return ordered_sums(inverse, weights, n_rows, xp)


def ordered_sums(inverse, weights, n_rows: int, xp):
    """Per-row sums of ``weights`` grouped by ``inverse``, each added in input order (with a GPU kernel)."""
    from gpuseg.engines.gpu_common import sum_runs

    order = xp.argsort(inverse, kind="stable")
    start = xp.searchsorted(inverse[order], xp.arange(n_rows + 1))
    return sum_runs(xp.ascontiguousarray(weights[order]), start, xp)


def packable_codes(features: Features) -> np.ndarray | None:
    """(N, K) integer colour codes of the samples when the rows are colours alone and pack into 64 bits."""
    if not features.is_image or features.lut is None or features.xy_scale is not None:
        return None
    colors = features.pixels
    if colors.dtype.itemsize * 8 * colors.shape[2] > 64:
        return None
    flat = colors.reshape(-1, colors.shape[2])
    return flat[features.mask.ravel()] if features.mask is not None else flat


def pack_codes(codes, xp=np):
    width = codes.dtype.itemsize * 8
    key = xp.zeros(codes.shape[0], dtype=xp.uint64)
    for k in range(codes.shape[1]):
        key |= codes[:, k].astype(xp.uint64) << xp.uint64(width * k)
    return key, width * codes.shape[1]


def merge_sorted(key, xp=np):
    """(first occurrence of each distinct key in order of appearance, inverse) by sorting."""
    _, first, inverse = xp.unique(key, return_index=True, return_inverse=True)
    order = xp.argsort(first)  # first occurrences are distinct: any sort is stable here
    rank = xp.empty_like(order)
    rank[order] = xp.arange(order.shape[0])
    return first[order], rank[inverse.ravel()]


def merge_dense(key, n_bins: int, xp):
    """``merge_hashed`` for small keys with array operations (for GPUs): the first index of each key by an atomic
    minimum into a table, then the occupied slots ordered by that index."""
    from gpuseg.engines.scatter import scatter_min

    n = key.shape[0]
    slot_first = xp.full(n_bins, n, dtype=xp.int64)
    scatter_min(xp, slot_first, key.astype(xp.int64), xp.arange(n, dtype=xp.int64))
    occupied = xp.flatnonzero(slot_first < n)
    first = slot_first[occupied]
    order = xp.argsort(first)
    rank = xp.empty(n_bins, dtype=xp.int64)
    rank[occupied[order]] = xp.arange(order.shape[0])
    return first[order], rank[key.astype(xp.int64)]


@njit(cache=True, nogil=True)
def merge_hashed(key):
    """The same as ``merge_sorted`` for packed integer keys, in one pass with an open-addressing hash table
    (twice as many slots as keys, at least) that holds only row numbers (4 bytes a slot): a slot's key is
    the key of its row's first occurrence. First occurrences come out in order of appearance."""
    n = key.shape[0]
    size = 1
    while size < 2 * n:
        size *= 2
    slot_row = np.full(size, -1, dtype=np.int32)
    inverse = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        k = key[i]
        j = np.int64((k * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & (size - 1)  # Fibonacci hashing
        while slot_row[j] >= 0 and key[first[slot_row[j]]] != k:
            j = (j + 1) & (size - 1)
        if slot_row[j] < 0:
            slot_row[j] = m
            first[m] = i
            m += 1
        inverse[i] = slot_row[j]
    return first[:m].copy(), inverse
