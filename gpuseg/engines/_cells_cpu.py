"""CPU kernels of the cell engine (numba). Points arrive sorted by cell (see ``cells.cell_layout``)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from gpuseg.engines._unionfind import find, union


@njit(inline="always", cache=True)
def _d2(points, i, j, eps2):
    d2 = 0.0
    for k in range(points.shape[1]):
        t = points[i, k] - points[j, k]
        d2 += t * t
        if d2 > eps2:
            return d2
    return d2


@njit(inline="always", cache=True)
def _lookup(keys, key):
    """Index of ``key`` in the ascending ``keys``, or -1."""
    lo, hi = 0, keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < keys.shape[0] and keys[lo] == key else -1


@njit(inline="always", cache=True)
def _neighbour_cell(coords, keys, table, extent, strides, offsets, c, o):
    """Index of the occupied cell at offset ``o`` from cell ``c``, or -1 (by table, else binary search)."""
    key = 0
    for k in range(coords.shape[1]):
        v = coords[c, k] + offsets[o, k]
        if v < 0 or v >= extent[k]:
            return -1
        key += v * strides[k]
    return table[key] if table.shape[0] else _lookup(keys, key)


@njit(parallel=True, cache=True, nogil=True)
def neighbour_cells(coords, keys, table, extent, offsets):
    """CSR lists (ptr, idx) of the occupied cells near each cell, itself first, in the order of offsets."""
    n_cells, n_dims = coords.shape
    strides = np.ones(n_dims, dtype=np.int64)
    for k in range(n_dims - 2, -1, -1):
        strides[k] = strides[k + 1] * extent[k + 1]
    counts = np.zeros(n_cells, dtype=np.int64)
    for c in prange(n_cells):
        for o in range(offsets.shape[0]):
            if _neighbour_cell(coords, keys, table, extent, strides, offsets, c, o) >= 0:
                counts[c] += 1
    ptr = np.zeros(n_cells + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(counts)
    idx = np.empty(ptr[-1], dtype=np.int64)
    for c in prange(n_cells):
        n = ptr[c]
        for o in range(offsets.shape[0]):
            b = _neighbour_cell(coords, keys, table, extent, strides, offsets, c, o)
            if b >= 0:
                idx[n] = b
                n += 1
    return ptr, idx


@njit(parallel=True, cache=True, nogil=True)
def count_neighbours(points, weights, start, ptr, idx, eps2, min_samples, stop_at, core, stop):
    """core[i] = weight of the eps-ball of point i >= min_samples. A cell's own points are all in the ball."""
    n_cells = start.shape[0] - 1
    for c in prange(n_cells):
        if stop[0]:  # interrupted (see gpuseg.interrupts)
            continue
        own = 0.0
        for i in range(start[c], start[c + 1]):
            own += weights[i]
        for i in range(start[c], start[c + 1]):
            total = own
            if total < stop_at:
                for n in range(ptr[c], ptr[c + 1]):
                    b = idx[n]
                    if b == c:
                        continue
                    for j in range(start[b], start[b + 1]):
                        if _d2(points, i, j, eps2) <= eps2:
                            total += weights[j]
                            if total >= stop_at:
                                break
                    if total >= stop_at:
                        break
            core[i] = total >= min_samples


@njit(inline="always", cache=True)
def _cores_touch(points, core, start, a, b, eps2):
    """Is some core point of cell a within eps of some core point of cell b?"""
    for i in range(start[a], start[a + 1]):
        if core[i]:
            for j in range(start[b], start[b + 1]):
                if core[j] and _d2(points, i, j, eps2) <= eps2:
                    return True
    return False


@njit(inline="always", cache=True)
def adjacent(coords, a, b):
    """Do cells a and b touch (every coordinate within 1)? Such cells are joined first: they are the
    likeliest to hold touching core points, and joining them early lets the others be skipped."""
    for k in range(coords.shape[1]):
        if abs(coords[a, k] - coords[b, k]) > 1:
            return False
    return True


@njit(cache=True, nogil=True)
def union_cores(points, core, start, coords, ptr, idx, eps2, parent, stop):
    """Union cells whose core points touch (one pair is enough): adjacent cells first, then the others,
    skipping pairs already joined."""
    n_cells = start.shape[0] - 1
    has_core = np.zeros(n_cells, dtype=np.bool_)
    for c in range(n_cells):
        for i in range(start[c], start[c + 1]):
            if core[i]:
                has_core[c] = True
                break
    for near in (True, False):
        for a in range(n_cells):
            if not has_core[a] or stop[0]:
                continue
            for n in range(ptr[a], ptr[a + 1]):
                b = idx[n]
                if b <= a or not has_core[b] or adjacent(coords, a, b) != near or find(parent, a) == find(parent, b):
                    continue
                if _cores_touch(points, core, start, a, b, eps2):
                    union(parent, a, b)
    return has_core


@njit(parallel=True, cache=True, nogil=True)
def attach_borders(points, core, start, ptr, idx, eps2, cell_label, labels, stop):
    """A non-core point takes the smallest cluster number among the core points within eps (-1 if none)."""
    n_cells = start.shape[0] - 1
    for c in prange(n_cells):
        if stop[0]:
            continue
        for i in range(start[c], start[c + 1]):
            if core[i]:
                labels[i] = cell_label[c]
                continue
            best = cell_label[c]  # a cell's own core points are all within eps
            for n in range(ptr[c], ptr[c + 1]):
                b = idx[n]
                lab = cell_label[b]
                if lab < 0 or (best >= 0 and lab >= best):
                    continue
                for j in range(start[b], start[b + 1]):
                    if core[j] and _d2(points, i, j, eps2) <= eps2:
                        best = lab
                        break
            labels[i] = best
