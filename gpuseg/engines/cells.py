"""The cell engine: exact DBSCAN for low-dimensional points (colours, 2-D/3-D data).

Identical rows are merged first (their counts become weights), then points are bucketed in cells of side
eps/sqrt(d), so that a cell's points are all within eps of each other and each point only looks at the
cells near its own: count neighbours -> union cores -> number clusters -> attach borders.
"""

from __future__ import annotations

import numpy as np

from gpuseg.engines.base import Job
from gpuseg.engines.cell_layout import MAX_CELL_DIMS, cell_layout, cell_table, neighbour_offsets
from gpuseg.engines.scatter import scatter_min


def unsupported(job: Job) -> str | None:
    if job.features.n_features > MAX_CELL_DIMS:
        return (
            f"engine='cells' handles up to {MAX_CELL_DIMS} features and the input has "
            f"{job.features.n_features}; use engine='tree' or 'auto'"
        )
    return None


def number_cells(roots, first_core, xp=np):
    """Cluster number of each cell (-1 without core points): components ordered by their smallest core
    sample index, as scikit-learn numbers them. ``first_core[c]`` is the smallest input index of a core
    point in cell c (unused where the cell has none)."""
    has = roots >= 0
    comp_first = xp.full(roots.shape[0], np.iinfo(np.int64).max, dtype=xp.int64)
    scatter_min(xp, comp_first, roots[has], first_core[has])
    comps = xp.flatnonzero(has & (roots == xp.arange(roots.shape[0])))
    rank = xp.empty(roots.shape[0], dtype=xp.int64)
    rank[comps[xp.argsort(comp_first[comps])]] = xp.arange(comps.shape[0])
    return xp.where(has, rank[xp.maximum(roots, 0)], -1)


def overflow_fallback(job: Job) -> np.ndarray:
    """scikit-learn on merged rows (with a tree, exact), on the host, when the points cannot be put in cells:
    cell keys beyond 62 bits, or coordinates too large beside eps for float64 cells."""
    from gpuseg.arrays import to_host
    from gpuseg.engines.sklearn import run_sklearn_merged

    job.note = "the points' spread or magnitude is too large beside eps for cells; scikit-learn on merged rows ran"
    job.features = job.features.map_arrays(to_host)
    job.weights = None if job.weights is None else to_host(job.weights)
    return run_sklearn_merged(job)


def run_cells_cpu(job: Job) -> np.ndarray:
    from gpuseg.engines import _cells_cpu as k
    from gpuseg.engines._unionfind import flatten_roots
    from gpuseg.engines.merge import merge_rows

    with job.sub_stage("merge"):
        merged = merge_rows(job.features, job.weights)
    with job.sub_stage("cells"):
        layout = cell_layout(merged.points, job.eps)
        if layout is None:
            return overflow_fallback(job)
        points = np.ascontiguousarray(merged.points[layout.order])
        weights = merged.weights[layout.order]
        offsets = neighbour_offsets(job.eps, points.shape[1])
        ptr, idx = k.neighbour_cells(layout.coords, layout.keys, cell_table(layout), layout.extent, offsets)
    eps2 = job.eps2
    with job.sub_stage("count"):
        core = np.zeros(points.shape[0], dtype=np.bool_)
        k.count_neighbours(
            points, weights, layout.start, ptr, idx, eps2, float(job.min_samples), job.stop_at, core, job.stop
        )
    n_cells = layout.start.shape[0] - 1
    with job.sub_stage("union"):
        parent = np.arange(n_cells, dtype=np.int64)
        has_core = k.union_cores(points, core, layout.start, layout.coords, ptr, idx, eps2, parent, job.stop)
    with job.sub_stage("number"):
        cell_of = np.repeat(np.arange(n_cells), np.diff(layout.start))
        first_core = np.full(n_cells, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_core, cell_of[core], layout.order[core])
        cell_label = number_cells(flatten_roots(parent, has_core), first_core)
    with job.sub_stage("borders"):
        sorted_labels = np.empty(points.shape[0], dtype=np.int64)
        k.attach_borders(points, core, layout.start, ptr, idx, eps2, cell_label, sorted_labels, job.stop)
        labels = np.empty_like(sorted_labels)
        labels[layout.order] = sorted_labels
    return labels[merged.inverse]
