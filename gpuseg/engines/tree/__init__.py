"""The tree engine: exact DBSCAN for points with any number of features.

Identical rows are merged first (their counts become weights), a k-d tree is built over the merged rows, and
each row's eps-neighbourhood is found by a radius query of the tree, in chunks of rows on a pool of threads
(the kernels release the GIL). Each chunk keeps its neighbour lists as CSR arrays, 4 bytes a neighbour,
where scikit-learn keeps a NumPy array of 8-byte indices per row. Then the stages of the other exact
engines run over those lists: count neighbours -> union cores -> number clusters -> attach borders.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from gpuseg.engines.base import Job

CHUNK_ROWS = 8192
"""Most rows queried in one chunk (fewer when there are fewer than four chunks a thread)."""
LEAF_SIZE = 64
"""Most rows in a leaf of the k-d tree (measured on 40k 6-D and 8-D blobs: 32 to 128 are within 15%)."""
GUARD_PROBES = 400
"""Rows whose neighbours are counted to predict the memory of the lists before they are built."""
_pool: tuple[int, int, ThreadPoolExecutor] | None = None
"""(process id, threads, the pool) of the last run."""
_pool_lock = threading.Lock()


@dataclass(frozen=True)
class NeighbourLists:
    """The eps-neighbourhoods of the rows ``rows`` (merged row numbers): the rows of ``rows[r]``'s
    neighbourhood, itself included, are ``idx[ptr[r]:ptr[r + 1]]``."""

    rows: np.ndarray
    ptr: np.ndarray
    idx: np.ndarray


def run_tree_cpu(job: Job) -> np.ndarray:
    """Labels of the samples of ``job`` (host arrays), identical to scikit-learn's DBSCAN with sample_weight.

    Parameters
    ----------
    job : Job
        The features (any number of columns), eps, min_samples, weights and stop flag of the run.

    Returns
    -------
    labels : ndarray of shape (N,), int64
        As :func:`gpuseg.dbscan` returns them.

    Raises
    ------
    MemoryLimitError
        The neighbour lists would not fit in the available memory.
    """
    from gpuseg.engines.merge import merge_rows
    from gpuseg.engines.tree import cpu as k
    from gpuseg.engines.unionfind import number_components

    with job.sub_stage("merge"):
        merged = merge_rows(job.features, job.weights)
    if not merged.weights.any():  # weights that cancel on every row: no ball reaches min_samples >= 1
        return np.full(merged.inverse.shape[0], -1, dtype=np.int64)
    n_rows = merged.n_rows
    index_dtype = np.int32 if n_rows < 2**31 else np.int64
    with job.sub_stage("tree"):
        points = np.ascontiguousarray(merged.points, dtype=np.float64)
        tree = k.build_tree(points, LEAF_SIZE, index_dtype, job.stop)
        del points
        check_memory(tree, job.eps, job.stop)
    with job.sub_stage("neighbours"):
        chunks = neighbour_lists(tree, job.eps2, job.stop)
        del tree
    with job.sub_stage("count"):
        core = np.zeros(n_rows, dtype=np.bool_)
        unweighted = job.weights is None and n_rows == merged.inverse.shape[0]
        for c in chunks:
            if unweighted:  # every weight is 1: the size of a list is its weight
                core[c.rows] = np.diff(c.ptr) >= job.min_samples
            else:
                k.count_weights(
                    c.rows, c.ptr, c.idx, merged.weights, float(job.min_samples), job.stop_at, core, job.stop
                )
    with job.sub_stage("union"):
        parent = np.arange(n_rows, dtype=index_dtype)
        for c in chunks:
            k.union_cores(c.rows, c.ptr, c.idx, core, parent, job.stop)
    with job.sub_stage("number"):
        labels = number_components(parent, core)
        del parent
    with job.sub_stage("borders"):
        for c in chunks:
            k.attach_borders(c.rows, c.ptr, c.idx, core, labels, job.stop)
    return labels[merged.inverse]


def neighbour_lists(tree: tuple, eps2: float, stop: np.ndarray) -> list[NeighbourLists]:
    """The eps-neighbourhood of every row of ``tree`` (from ``cpu.build_tree``), queried in chunks of
    rows in tree order (neighbouring rows visit the same nodes) on ``os.cpu_count()`` threads; each chunk's
    lists become CSR arrays as soon as it is done, so that only a few chunks' buffers exist at once."""
    from gpuseg.engines.tree import cpu as k

    order, start, end, lower, upper, cols = tree
    n_rows = order.shape[0]
    threads = os.cpu_count() or 1
    size = max(1, min(CHUNK_ROWS, -(-n_rows // (4 * threads))))
    bounds = [(lo, min(lo + size, n_rows)) for lo in range(0, n_rows, size)]

    def chunk(lo_hi: tuple[int, int]) -> NeighbourLists:
        lo, hi = lo_hi
        positions = np.arange(lo, hi, dtype=np.int64)
        ptr, idx = k.query(cols, order, start, end, lower, upper, positions, eps2, False, stop)
        return NeighbourLists(order[lo:hi], ptr, idx)

    if len(bounds) == 1 or threads == 1:
        return [chunk(b) for b in bounds]
    return list(thread_pool(threads).map(chunk, bounds))


def thread_pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` threads kept from one run to the next (a new one in a forked child, whose
    threads did not survive the fork). Threads started anew for each run leave memory behind (stacks, malloc
    arenas): 9 MiB more after a few runs on 40k rows, measured. Its threads are not named "gpuseg-...": idle,
    they hold nothing up (see ``gpuseg.cli.app._interrupted``)."""
    global _pool
    with _pool_lock:
        pid = os.getpid()
        if _pool is None or _pool[:2] != (pid, threads):
            if _pool is not None and _pool[0] == pid:
                _pool[2].shutdown(wait=False)
            _pool = (pid, threads, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tree-engine"))
        return _pool[2]


def check_memory(tree: tuple, eps: float, stop: np.ndarray, seed: int = 0) -> None:
    """Raise :class:`MemoryLimitError` when the neighbour lists would take more than 80% of the available
    memory: their size is predicted from the neighbours of ``GUARD_PROBES`` random rows, counted in the tree.

    Raises
    ------
    MemoryLimitError
        With the predicted and the available memory, and the fix (a smaller eps).
    """
    from gpuseg.engines.sklearn import refuse_beyond_memory
    from gpuseg.engines.tree import cpu as k

    order, start, end, lower, upper, cols = tree
    n_rows = order.shape[0]
    rng = np.random.default_rng(seed)
    probes = np.arange(n_rows) if n_rows <= GUARD_PROBES else rng.choice(n_rows, GUARD_PROBES, replace=False)
    ptr, _ = k.query(cols, order, start, end, lower, upper, probes.astype(np.int64), eps * eps, True, stop)
    mean = ptr[-1] / probes.shape[0]
    need = n_rows * (mean * order.itemsize + 8)  # indices and row pointers
    refuse_beyond_memory(
        need,
        "engine='tree'",
        f"the eps-neighbourhoods of {n_rows:,} distinct rows",
        f"Use a smaller eps: eps={eps:g} puts about {mean:,.0f} rows within eps of each row.",
    )
