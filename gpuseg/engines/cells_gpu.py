"""GPU kernels of the cell engine: the same stages as the CPU engine (``_cells_cpu``), one thread per cell,
per point or per pair of neighbouring cells."""

from __future__ import annotations

import numpy as np
from numba import cuda

from gpuseg.engines.base import Job
from gpuseg.engines.cell_layout import cell_layout, cell_table, neighbour_offsets
from gpuseg.engines.cells import number_cells, overflow_fallback
from gpuseg.engines.gpu_common import THREADS_1D, blocks_1d, find, flatten_roots, sum_runs, union
from gpuseg.engines.merge import merge_rows
from gpuseg.engines.scatter import scatter_min


@cuda.jit(device=True, inline=True)
def _d2(points, i, j, eps2):
    d2 = 0.0
    for k in range(points.shape[1]):
        t = points[i, k] - points[j, k]
        d2 += t * t
        if d2 > eps2:
            return d2
    return d2


@cuda.jit(device=True, inline=True)
def _neighbour_cell(coords, keys, table, extent, strides, offsets, c, o):
    key = 0
    for k in range(coords.shape[1]):
        v = coords[c, k] + offsets[o, k]
        if v < 0 or v >= extent[k]:
            return -1
        key += v * strides[k]
    if table.shape[0]:
        return table[key]
    lo = 0
    hi = keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < keys.shape[0] and keys[lo] == key:
        return lo
    return -1


@cuda.jit
def count_neighbour_cells(coords, keys, table, extent, strides, offsets, counts):
    c = cuda.grid(1)
    if c < coords.shape[0]:
        n = 0
        for o in range(offsets.shape[0]):
            if _neighbour_cell(coords, keys, table, extent, strides, offsets, c, o) >= 0:
                n += 1
        counts[c] = n


@cuda.jit
def fill_neighbour_cells(coords, keys, table, extent, strides, offsets, ptr, idx):
    c = cuda.grid(1)
    if c < coords.shape[0]:
        n = ptr[c]
        for o in range(offsets.shape[0]):
            b = _neighbour_cell(coords, keys, table, extent, strides, offsets, c, o)
            if b >= 0:
                idx[n] = b
                n += 1


@cuda.jit
def count_neighbours(points, weights, start, cell_of, ptr, idx, cell_weight, eps2, min_samples, stop_at, core):
    i = cuda.grid(1)
    if i >= points.shape[0]:
        return
    c = cell_of[i]
    total = cell_weight[c]  # a cell's own points are all within eps
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


@cuda.jit(device=True, inline=True)
def _adjacent(coords, a, b):
    for k in range(coords.shape[1]):
        if abs(coords[a, k] - coords[b, k]) > 1:
            return False
    return True


@cuda.jit
def union_cores(points, core, start, coords, entry_cell, idx, has_core, near, eps2, parent):
    """One thread per pair of neighbouring cells (a < b), adjacent ones (near) or the others: union them
    when some core pair touches. The launch for the others comes second, and skips pairs already joined."""
    n = cuda.grid(1)
    if n >= idx.shape[0]:
        return
    a = entry_cell[n]
    b = idx[n]
    if b <= a or not has_core[a] or not has_core[b] or _adjacent(coords, a, b) != near:
        return
    if find(parent, a) == find(parent, b):
        return
    for i in range(start[a], start[a + 1]):
        if core[i]:
            for j in range(start[b], start[b + 1]):
                if core[j] and _d2(points, i, j, eps2) <= eps2:
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
        return
    best = cell_label[c]
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


def run_cells_gpu(job: Job):
    return run_cells_device(job, job.device.xp)


def run_cells_device(job: Job, xp):
    """The cell engine on the GPU; ``xp`` is CuPy, or NumPy under the CUDA simulator."""
    with job.sub_stage("merge"):
        merged = merge_rows(job.features, job.weights, xp)
    with job.sub_stage("cells"):
        layout = cell_layout(merged.points, job.eps, xp)
        if layout is None:
            return overflow_fallback(job)
        points = xp.ascontiguousarray(merged.points[layout.order])
        weights = merged.weights[layout.order]
        n_cells = layout.start.shape[0] - 1
        offsets = xp.asarray(neighbour_offsets(job.eps, points.shape[1]))
        extent_host = [int(v) for v in layout.extent.tolist()]
        strides = xp.asarray(np.cumprod([1, *extent_host[:0:-1]])[::-1].astype(np.int64))
        counts = xp.empty(n_cells, dtype=xp.int64)
        cells_grid = blocks_1d(n_cells)
        cell_args = (layout.coords, layout.keys, cell_table(layout, xp), layout.extent, strides, offsets)
        count_neighbour_cells[cells_grid, THREADS_1D](*cell_args, counts)
        ptr = xp.zeros(n_cells + 1, dtype=xp.int64)
        ptr[1:] = xp.cumsum(counts)
        idx = xp.empty(int(ptr[-1]), dtype=xp.int64)
        fill_neighbour_cells[cells_grid, THREADS_1D](*cell_args, ptr, idx)
        cell_of = xp.searchsorted(layout.start, xp.arange(points.shape[0]), side="right") - 1
        entry_cell = xp.searchsorted(ptr, xp.arange(idx.shape[0]), side="right") - 1
        cell_weight = sum_runs(weights, layout.start, xp)
    eps2 = job.eps2
    n_points = points.shape[0]
    with job.sub_stage("count"):
        core = xp.empty(n_points, dtype=xp.bool_)
        count_neighbours[blocks_1d(n_points), THREADS_1D](
            points,
            weights,
            layout.start,
            cell_of,
            ptr,
            idx,
            cell_weight,
            eps2,
            float(job.min_samples),
            job.stop_at,
            core,
        )
    with job.sub_stage("union"):
        core_sum = xp.concatenate([xp.zeros(1, dtype=xp.int64), xp.cumsum(core, dtype=xp.int64)])
        has_core = (core_sum[layout.start[1:]] - core_sum[layout.start[:-1]]) > 0
        parent = xp.arange(n_cells, dtype=xp.int64)
        for near in (True, False):
            if idx.shape[0]:
                union_cores[blocks_1d(idx.shape[0]), THREADS_1D](
                    points, core, layout.start, layout.coords, entry_cell, idx, has_core, near, eps2, parent
                )
    with job.sub_stage("number"):
        roots = xp.empty(n_cells, dtype=xp.int64)
        flatten_roots[cells_grid, THREADS_1D](parent, has_core, roots)
        first_core = xp.full(n_cells, np.iinfo(np.int64).max, dtype=xp.int64)
        scatter_min(xp, first_core, cell_of[core], layout.order[core])
        cell_label = number_cells(roots, first_core, xp)
    with job.sub_stage("borders"):
        sorted_labels = xp.empty(n_points, dtype=xp.int64)
        attach_borders[blocks_1d(n_points), THREADS_1D](
            points, core, layout.start, cell_of, ptr, idx, cell_label, eps2, sorted_labels
        )
        labels = xp.empty_like(sorted_labels)
        labels[layout.order] = sorted_labels
    return labels[merged.inverse]
