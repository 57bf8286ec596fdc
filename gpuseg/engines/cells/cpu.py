"""CPU kernels of the cell engine (numba), a cell per iteration, with the helpers of the CUDA kernels. Points
arrive sorted by cell (see ``layout.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from gpuseg.engines import device_helpers as helpers
from gpuseg.engines.stopping import stopped
from gpuseg.engines.unionfind import find, union

points_d2 = helpers.for_cpu(helpers.points_d2)
neighbour_cell = helpers.for_cpu(helpers.neighbour_cell)
cells_adjacent = helpers.for_cpu(helpers.cells_adjacent)
ball_weight = helpers.ball_weight_with(helpers.for_cpu)
border_label = helpers.cell_border_label_with(helpers.for_cpu)


ONE_PASS_ENTRIES = 2**25
"""neighbour_cells looks each (cell, offset) up once, into a scratch table of this many int32 entries at most;
beyond it, twice (once to count, once to fill)."""


@njit(parallel=True, cache=True, nogil=True)
def neighbour_cells(coords, keys, table, extent, offsets):
    """CSR lists (ptr, idx) of the occupied cells near each cell, itself first, in the order of offsets."""
    n_cells, n_dims = coords.shape
    n_offsets = offsets.shape[0]
    strides = np.ones(n_dims, dtype=np.int64)
    for k in range(n_dims - 2, -1, -1):
        strides[k] = strides[k + 1] * extent[k + 1]
    counts = np.zeros(n_cells, dtype=np.int64)
    one_pass = n_cells * n_offsets <= ONE_PASS_ENTRIES
    found = np.empty((n_cells if one_pass else 0, n_offsets), dtype=np.int32)
    for c in prange(n_cells):
        n = 0
        for o in range(n_offsets):
            b = neighbour_cell(coords, keys, table, extent, strides, offsets, c, o)
            if b >= 0:
                if one_pass:
                    found[c, n] = b
                n += 1
        counts[c] = n
    ptr = np.zeros(n_cells + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(counts)
    idx = np.empty(ptr[-1], dtype=np.int32)
    for c in prange(n_cells):
        n = ptr[c]
        if one_pass:
            for m in range(counts[c]):
                idx[n + m] = found[c, m]
            continue
        for o in range(n_offsets):
            b = neighbour_cell(coords, keys, table, extent, strides, offsets, c, o)
            if b >= 0:
                idx[n] = b
                n += 1
    return ptr, idx


@njit(parallel=True, cache=True, nogil=True)
def count_neighbours(points, weights, start, ptr, idx, eps2, min_samples, stop_at, core, stop):
    """core[i] = weight of the eps-ball of point i >= min_samples. A cell's own points are all in the ball."""
    n_cells = start.shape[0] - 1
    for c in prange(n_cells):
        if stopped(stop):  # interrupted (see gpuseg._core.interrupts)
            continue
        own = 0.0
        for i in range(start[c], start[c + 1]):
            own += weights[i]
        for i in range(start[c], start[c + 1]):
            core[i] = ball_weight(points, weights, start, ptr, idx, c, i, own, eps2, stop_at) >= min_samples


@njit(inline="always", cache=True)
def _cores_touch(points, core, start, a, b, eps2):
    """Is some core point of cell a within eps of some core point of cell b?"""
    for i in range(start[a], start[a + 1]):
        if core[i]:
            for j in range(start[b], start[b + 1]):
                if core[j] and points_d2(points, i, j, eps2) <= eps2:
                    return True
    return False


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
            if not has_core[a] or stopped(stop):
                continue
            for n in range(ptr[a], ptr[a + 1]):
                b = idx[n]
                if b <= a or not has_core[b] or cells_adjacent(coords, a, b) != near:
                    continue
                if find(parent, a) == find(parent, b):
                    continue
                if _cores_touch(points, core, start, a, b, eps2):
                    union(parent, a, b)
    return has_core


@njit(parallel=True, cache=True, nogil=True)
def attach_borders(points, core, start, ptr, idx, eps2, cell_label, labels, stop):
    """A non-core point takes the smallest cluster number among the core points within eps (-1 if none)."""
    n_cells = start.shape[0] - 1
    for c in prange(n_cells):
        if stopped(stop):
            continue
        for i in range(start[c], start[c + 1]):
            if core[i]:
                labels[i] = cell_label[c]
            else:
                labels[i] = border_label(points, core, start, ptr, idx, cell_label, c, i, eps2)


class CpuCellStages:
    """The cell engine's stages on the CPU, for :func:`gpuseg.engines.cells.run_cells`."""

    def __init__(self, job, layout, points, weights, offsets, table):
        self.job, self.layout, self.points, self.weights = job, layout, points, weights
        self.ptr, self.idx = neighbour_cells(layout.coords, layout.keys, table, layout.extent, offsets)

    def count(self):
        job, layout = self.job, self.layout
        core = np.zeros(self.points.shape[0], dtype=np.bool_)
        count_neighbours(
            self.points, self.weights, layout.start, self.ptr, self.idx, job.eps2, float(job.min_samples),
            job.stop_at, core, job.stop,
        )  # fmt: skip
        return core

    def union(self, core):
        """Root cell of every cell with core points (-1 for the others)."""
        from gpuseg.engines.unionfind import flatten_roots

        layout = self.layout
        parent = np.arange(layout.start.shape[0] - 1, dtype=np.int64)
        has_core = union_cores(
            self.points, core, layout.start, layout.coords, self.ptr, self.idx, self.job.eps2, parent, self.job.stop
        )
        return flatten_roots(parent, has_core)

    def attach_borders(self, core, cell_label):
        labels = np.empty(self.points.shape[0], dtype=np.int64)
        attach_borders(
            self.points, core, self.layout.start, self.ptr, self.idx, self.job.eps2, cell_label, labels, self.job.stop
        )
        return labels
