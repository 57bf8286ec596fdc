"""CUDA kernels of the cell engine: the stages of the CPU kernels (``cpu.py``) with the same helpers, but a
thread per point or per pair of neighbouring cells, where the CPU walks a cell per iteration."""

from __future__ import annotations

from gpuseg.engines import device_helpers as helpers
from gpuseg.engines.gpu_common import cuda, find, union

points_d2 = helpers.for_cuda(helpers.points_d2)
neighbour_cell = helpers.for_cuda(helpers.neighbour_cell)
cells_adjacent = helpers.for_cuda(helpers.cells_adjacent)
ball_weight = helpers.ball_weight_with(helpers.for_cuda)
border_label = helpers.cell_border_label_with(helpers.for_cuda)


@cuda.jit
def count_neighbour_cells(coords, keys, table, extent, strides, offsets, counts):
    c = cuda.grid(1)
    if c < coords.shape[0]:
        n = 0
        for o in range(offsets.shape[0]):
            if neighbour_cell(coords, keys, table, extent, strides, offsets, c, o) >= 0:
                n += 1
        counts[c] = n


@cuda.jit
def fill_neighbour_cells(coords, keys, table, extent, strides, offsets, ptr, idx):
    c = cuda.grid(1)
    if c < coords.shape[0]:
        n = ptr[c]
        for o in range(offsets.shape[0]):
            b = neighbour_cell(coords, keys, table, extent, strides, offsets, c, o)
            if b >= 0:
                idx[n] = b
                n += 1


@cuda.jit
def count_neighbours(points, weights, start, cell_of, ptr, idx, cell_weight, eps2, min_samples, stop_at, core):
    i = cuda.grid(1)
    if i >= points.shape[0]:
        return
    c = cell_of[i]  # a cell's own points are all within eps
    core[i] = ball_weight(points, weights, start, ptr, idx, c, i, cell_weight[c], eps2, stop_at) >= min_samples


@cuda.jit
def union_cores(points, core, start, coords, entry_cell, idx, has_core, near, eps2, parent):
    """One thread per pair of neighbouring cells (a < b), adjacent ones (near) or the others: union them
    when some core pair touches. The launch for the others comes second, and skips pairs already joined."""
    n = cuda.grid(1)
    if n >= idx.shape[0]:
        return
    a = entry_cell[n]
    b = idx[n]
    if b <= a or not has_core[a] or not has_core[b] or cells_adjacent(coords, a, b) != near:
        return
    if find(parent, a) == find(parent, b):
        return
    for i in range(start[a], start[a + 1]):
        if core[i]:
            for j in range(start[b], start[b + 1]):
                if core[j] and points_d2(points, i, j, eps2) <= eps2:
                    union(parent, a, b)
                    return


@cuda.jit
def attach_borders(points, core, start, cell_of, ptr, idx, cell_label, eps2, labels):
    i = cuda.grid(1)
    if i >= points.shape[0]:
        return
    c = cell_of[i]
    if core[i]:
        labels[i] = cell_label[c]
    else:
        labels[i] = border_label(points, core, start, ptr, idx, cell_label, c, i, eps2)


class CudaCellStages:
    """The cell engine's stages on the GPU, for :func:`gpuseg.engines.cells.run_cells`."""

    def __init__(self, job, layout, points, weights, offsets, table, xp):
        import numpy as np

        from gpuseg.engines.gpu_common import THREADS_1D, blocks_1d, sum_runs

        self.job, self.layout, self.points, self.weights, self.xp = job, layout, points, weights, xp
        n_cells = layout.start.shape[0] - 1
        extent = [int(v) for v in layout.extent.tolist()]
        strides = xp.asarray(np.cumprod([1, *extent[:0:-1]])[::-1].astype(np.int64))
        counts = xp.empty(n_cells, dtype=xp.int64)
        cell_args = (layout.coords, layout.keys, table, layout.extent, strides, xp.asarray(offsets))
        count_neighbour_cells[blocks_1d(n_cells), THREADS_1D](*cell_args, counts)
        self.ptr = xp.zeros(n_cells + 1, dtype=xp.int64)
        self.ptr[1:] = xp.cumsum(counts)
        self.idx = xp.empty(int(self.ptr[-1]), dtype=xp.int64)
        fill_neighbour_cells[blocks_1d(n_cells), THREADS_1D](*cell_args, self.ptr, self.idx)
        self.cell_of = xp.repeat(xp.arange(n_cells, dtype=xp.int64), xp.diff(layout.start))
        self.entry_cell = xp.repeat(xp.arange(n_cells, dtype=xp.int64), counts)
        self.cell_weight = sum_runs(weights, layout.start, xp)

    def count(self):
        from gpuseg.engines.gpu_common import THREADS_1D, blocks_1d

        job, xp, n = self.job, self.xp, self.points.shape[0]
        core = xp.empty(n, dtype=xp.bool_)
        count_neighbours[blocks_1d(n), THREADS_1D](
            self.points, self.weights, self.layout.start, self.cell_of, self.ptr, self.idx, self.cell_weight,
            job.eps2, float(job.min_samples), job.stop_at, core,
        )  # fmt: skip
        return core

    def union(self, core):
        """Root cell of every cell with core points (-1 for the others)."""
        from gpuseg.engines.gpu_common import THREADS_1D, blocks_1d, flatten_roots

        xp, layout = self.xp, self.layout
        n_cells = layout.start.shape[0] - 1
        core_sum = xp.concatenate([xp.zeros(1, dtype=xp.int64), xp.cumsum(core, dtype=xp.int64)])
        has_core = (core_sum[layout.start[1:]] - core_sum[layout.start[:-1]]) > 0
        parent = xp.arange(n_cells, dtype=xp.int64)
        for near in (True, False):
            if self.idx.shape[0]:
                union_cores[blocks_1d(self.idx.shape[0]), THREADS_1D](
                    self.points, core, layout.start, layout.coords, self.entry_cell, self.idx, has_core, near,
                    self.job.eps2, parent,
                )  # fmt: skip
        roots = xp.empty(n_cells, dtype=xp.int64)
        flatten_roots[blocks_1d(n_cells), THREADS_1D](parent, has_core, roots)
        return roots

    def attach_borders(self, core, cell_label):
        from gpuseg.engines.gpu_common import THREADS_1D, blocks_1d

        n = self.points.shape[0]
        labels = self.xp.empty(n, dtype=self.xp.int64)
        attach_borders[blocks_1d(n), THREADS_1D](
            self.points, core, self.layout.start, self.cell_of, self.ptr, self.idx, cell_label, self.job.eps2, labels
        )
        return labels
