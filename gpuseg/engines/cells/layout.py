"""Cells for low-dimensional points: bucket points in cells of side eps/sqrt(d), so that every pair of
points in one cell is within eps, and list for each cell the cells that can hold a neighbour.

Shared by the CPU and GPU cell engines (the layout is computed with the array module of the device).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from gpuseg._core.arrays import to_host

MAX_CELL_DIMS = 5
"""Points of more dimensions than this go to scikit-learn (on merged rows): the neighbour cells explode."""


CELL_ROUNDING = 1e-6
"""Largest rounding error, in cells, of a point's computed cell coordinate that the layout accepts; inputs
whose magnitude or spread makes it larger (coordinates ~1e9 times eps) go to an exact path instead."""
CELL_SLACK = 1e-5
"""Relative shrink of the cell side, so that points sharing a computed cell are within eps despite
coordinate errors up to CELL_ROUNDING."""


def cell_side(eps: float, n_dims: int) -> float:
    """Side of a cell whose diagonal stays within eps even after rounding of the coordinates."""
    return eps / math.sqrt(n_dims) * (1 - CELL_SLACK)


def neighbour_offsets(eps: float, n_dims: int) -> np.ndarray:
    """Integer cell offsets (including zero) whose cells can hold a point within eps of the centre cell's,
    nearest first, so that a count that stops at min_samples looks at the likeliest cells first. Computed
    coordinates may be off by CELL_ROUNDING: the reach and the gaps allow for it."""
    side = cell_side(eps, n_dims)
    slack = 2 * CELL_ROUNDING
    reach = int(math.floor(eps / side + slack)) + 1
    offsets = []
    for o in itertools.product(range(-reach, reach + 1), repeat=n_dims):
        gap = sum(max(abs(v) - 1 - slack, 0) ** 2 for v in o)
        if gap * side * side <= eps * eps:
            offsets.append((gap, sum(v * v for v in o), o))
    offsets.sort()
    return np.array([o for _, _, o in offsets], dtype=np.int64).reshape(-1, n_dims)


@dataclass(frozen=True)
class CellLayout:
    """Points sorted by cell: ``order[i]`` is the input row at sorted position i; cell c holds sorted
    positions ``start[c]:start[c+1]``; ``coords[c]`` are its integer coordinates and ``keys`` their
    linear keys, ascending; ``extent`` is the number of cells along each dimension."""

    order: np.ndarray
    start: np.ndarray
    coords: np.ndarray
    keys: np.ndarray
    extent: np.ndarray


def cell_layout(points, eps: float, xp=np) -> CellLayout | None:
    """Sort ``points`` (M, d) into cells; None when the cell keys would not fit in 62 bits, or when the
    points' magnitude or spread is so large beside eps that float64 cannot place them in cells reliably."""
    n_dims = points.shape[1]
    side = cell_side(eps, n_dims)
    lo, hi = _bounds(points) if xp is np else (points.min(axis=0), points.max(axis=0))
    spans = [float(v) for v in to_host((hi - lo) / side)]  # in floating point: checked before any cast
    magnitude = [max(abs(float(a)), abs(float(b))) / side for a, b in zip(to_host(lo), to_host(hi), strict=True)]
    if not all(math.isfinite(v) for v in spans + magnitude):
        return None
    if sum(math.log2(math.floor(v) + 1) for v in spans) >= 62:  # the cell keys would not fit in 62 bits
        return None
    if max(4 * 2.0**-52 * (m + v) for m, v in zip(magnitude, spans, strict=True)) > CELL_ROUNDING:
        return None  # rounding of the coordinates would blur the cells
    coords = xp.floor((points - lo) / side).astype(xp.int64)
    extent_host = [int(v) for v in to_host(coords.max(axis=0) + 1)]
    strides = np.cumprod([1, *extent_host[:0:-1]])[::-1].astype(np.int64)
    n_keys = math.prod(extent_host)
    if xp is np and n_keys <= max(4 * points.shape[0], COUNTING_SORT_KEYS):
        key, order = _counting_sort(coords, strides, n_keys)
    else:
        key = (coords * xp.asarray(strides)).sum(axis=1)
        order = xp.argsort(key)
    key = key[order]
    first = xp.flatnonzero(xp.concatenate([xp.ones(1, dtype=bool), key[1:] != key[:-1]]))
    start = xp.concatenate([first, xp.asarray([key.shape[0]])]).astype(xp.int64)
    return CellLayout(
        order=order.astype(xp.int64),
        start=start,
        coords=coords[order[first]],
        keys=key[first],
        extent=xp.asarray(np.array(extent_host, dtype=np.int64)),
    )


COUNTING_SORT_KEYS = 2**20
"""On the CPU, points are sorted by cell with a counting sort when the grid has at most this many cells, or
four per point; else by a comparison sort."""


@njit(cache=True, nogil=True)
def _bounds(points):
    """(smallest, largest) value of each column, in one pass over the rows (NumPy's axis-0 reductions
    stride through memory)."""
    lo = points[0].copy()
    hi = points[0].copy()
    for i in range(1, points.shape[0]):
        for k in range(points.shape[1]):
            v = points[i, k]
            lo[k] = min(lo[k], v)
            hi[k] = max(hi[k], v)
    return lo, hi


@njit(cache=True, nogil=True)
def _counting_sort(coords, strides, n_keys):
    """(cell key of each point, the points' order by key), in O(points + cells)."""
    n = coords.shape[0]
    key = np.empty(n, dtype=np.int64)
    for i in range(n):
        k = 0
        for j in range(coords.shape[1]):
            k += coords[i, j] * strides[j]
        key[i] = k
    start = np.zeros(n_keys + 1, dtype=np.int64)
    for i in range(n):
        start[key[i] + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[start[key[i]]] = i
        start[key[i]] += 1
    return key, order


DENSE_TABLE_CELLS = 2**26
"""Grids of at most this many cells (a table of at most 256 MiB) get a lookup table from cell key to cell;
larger ones a binary search."""


def cell_table(layout: CellLayout, xp=np):
    """int32 table from linear cell key to occupied cell index (-1 where empty), or an empty array when
    the grid is larger than ``DENSE_TABLE_CELLS``."""
    size = math.prod(int(v) for v in layout.extent.tolist())
    if size > DENSE_TABLE_CELLS:
        return xp.zeros(0, dtype=xp.int32)
    table = xp.full(size, -1, dtype=xp.int32)
    table[layout.keys] = xp.arange(layout.keys.shape[0], dtype=xp.int32)
    return table
