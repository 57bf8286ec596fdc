"""The cell engine: exact DBSCAN for low-dimensional points (colours, 2-D/3-D data).

Identical rows are merged first (their counts become weights), then points are bucketed in cells of side
eps/sqrt(d), so that a cell's points are all within eps of each other and each point only looks at the
cells near its own: count neighbours -> union cores -> number clusters -> attach borders. One driver
(:func:`run_cells`) runs the stages on either target: ``cpu.py`` (numba) and ``cuda.py`` (numba-cuda).
"""

from __future__ import annotations

import numpy as np

from gpuseg.engines.base import Job
from gpuseg.engines.cells.layout import MAX_CELL_DIMS, cell_layout, cell_table, neighbour_offsets
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
    from gpuseg._core.arrays import to_host
    from gpuseg.engines.sklearn import run_sklearn_merged

    job.note = "the points' spread or magnitude is too large beside eps for cells; scikit-learn on merged rows ran"
    job.features = job.features.map_arrays(to_host)
    job.weights = None if job.weights is None else to_host(job.weights)
    return run_sklearn_merged(job)


def run_cells(job: Job, xp=None):
    """The cell engine on the job's device; ``xp`` is the device's array module (NumPy under the CUDA
    simulator)."""
    from gpuseg.engines.merge import merge_rows

    if job.device.kind == "cpu":
        from gpuseg.engines.cells.cpu import CpuCellStages

        xp = np

        def make_stages(*args):
            return CpuCellStages(job, *args)
    else:
        from gpuseg.engines.cells.cuda import CudaCellStages

        xp = xp or job.device.xp

        def make_stages(*args):
            return CudaCellStages(job, *args, xp)

    with job.sub_stage("merge"):
        merged = merge_rows(job.features, job.weights, xp)
    with job.sub_stage("cells"):
        layout = cell_layout(merged.points, job.eps, xp)
        if layout is None:
            return overflow_fallback(job)
        points = xp.ascontiguousarray(merged.points[layout.order])
        weights = merged.weights[layout.order]
        offsets = neighbour_offsets(job.eps, points.shape[1])
        stages = make_stages(layout, points, weights, offsets, cell_table(layout, xp))
    with job.sub_stage("count"):
        core = stages.count()
    with job.sub_stage("union"):
        roots = stages.union(core)
    with job.sub_stage("number"):
        n_cells = layout.start.shape[0] - 1
        cell_of = xp.repeat(xp.arange(n_cells, dtype=xp.int64), xp.diff(layout.start))
        first_core = xp.full(n_cells, np.iinfo(np.int64).max, dtype=xp.int64)
        scatter_min(xp, first_core, cell_of[core], layout.order[core])
        cell_label = number_cells(roots, first_core, xp)
    with job.sub_stage("borders"):
        sorted_labels = stages.attach_borders(core, cell_label)
        labels = xp.empty_like(sorted_labels)
        labels[layout.order] = sorted_labels
    return labels[merged.inverse]
