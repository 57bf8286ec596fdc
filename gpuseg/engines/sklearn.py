"""scikit-learn's DBSCAN, the reference, with a guard against running out of memory."""

from __future__ import annotations

import numpy as np

from gpuseg._core.memory import available_memory
from gpuseg.engines.base import Job
from gpuseg.engines.merge import merge_rows
from gpuseg.errors import MemoryLimitError

GUARD_PROBES = 400
GUARD_SUBSET = 20_000
BYTES_PER_NEIGHBOUR = 16
"""Peak bytes per stored neighbour of scikit-learn's DBSCAN: an 8-byte index plus the radius query's
temporaries (measured: 15.7 bytes of peak RSS per neighbour, 20,000 2-D points with 1,760 neighbours each)."""


def run_sklearn(job: Job) -> np.ndarray:
    """scikit-learn on the raw rows (the reference)."""
    return _fit(job.features.matrix(), job.weights, job, "sklearn")


def run_sklearn_merged(job: Job) -> np.ndarray:
    """scikit-learn on the merged identical rows, their counts as sample_weight, labels mapped back; with a
    k-d tree, so that distances follow gpuseg's exactness rule whatever the number of rows."""
    with job.sub_stage("merge"):
        merged = merge_rows(job.features, job.weights)
    if not merged.weights.any():  # weights that cancel on every row: no ball reaches min_samples >= 1
        return np.full(merged.inverse.shape[0], -1, dtype=np.int64)
    weights: np.ndarray | None = merged.weights
    if job.weights is None and merged.n_rows == merged.inverse.shape[0]:
        weights = None  # no two rows alike: scikit-learn's unweighted fit, a little faster
    # A tree computes each distance from the differences of the coordinates, as the exactness rule does; on
    # few rows scikit-learn's "auto" would pick brute force, whose |a|^2 + |b|^2 - 2ab loses precision.
    return _fit(merged.points, weights, job, "sklearn-merged", algorithm="kd_tree")[merged.inverse]


def _fit(points: np.ndarray, weights: np.ndarray | None, job: Job, name: str, algorithm: str = "auto") -> np.ndarray:
    check_memory(points, job.eps, name)
    from sklearn.cluster import DBSCAN

    with job.sub_stage("sklearn"):
        model = DBSCAN(eps=job.eps, min_samples=job.min_samples, algorithm=algorithm)
        model.fit(points, sample_weight=weights)
    return model.labels_.astype(np.int64)


def predicted_memory(points: np.ndarray, eps: float, seed: int = 0) -> float:
    """Bytes scikit-learn's DBSCAN would take to store every eps-neighbourhood of ``points``.

    The mean neighbourhood size is estimated from ``GUARD_PROBES`` random points counted (with a k-d tree)
    against a random subset of ``GUARD_SUBSET`` points, scaled to all points.
    """
    n = points.shape[0]
    rng = np.random.default_rng(seed)
    subset = points if n <= GUARD_SUBSET else points[rng.choice(n, GUARD_SUBSET, replace=False)]
    probes = points if n <= GUARD_PROBES else points[rng.choice(n, GUARD_PROBES, replace=False)]
    from sklearn.neighbors import KDTree

    with np.errstate(over="ignore", invalid="ignore"):  # huge coordinates: inf distances, not within eps
        within = int(KDTree(subset).query_radius(probes, r=eps, count_only=True).sum())
    mean_neighbours = within / probes.shape[0] * n / subset.shape[0]
    return n * max(mean_neighbours, 1.0) * BYTES_PER_NEIGHBOUR


def check_memory(points: np.ndarray, eps: float, name: str) -> None:
    """Raise :class:`MemoryLimitError` before scikit-learn would be killed for lack of memory."""
    refuse_beyond_memory(
        predicted_memory(points, eps),
        f"engine={name!r}: scikit-learn",
        f"the eps-neighbourhoods of {points.shape[0]:,} samples",
        "Use engine='auto' (gpuseg's exact engines, same labels), or a smaller eps.",
    )


def refuse_beyond_memory(need: float, who: str, what: str, fix: str) -> None:
    """Raise :class:`MemoryLimitError` when ``need`` bytes exceed 80% of the available memory.

    The message reads: ``{who} would need about N GiB to store {what}, and M GiB is available. {fix}``.
    """
    have = available_memory()
    if need > 0.8 * have:
        raise MemoryLimitError(
            f"{who} would need about {need / 2**30:.1f} GiB to store {what}, and {have / 2**30:.1f} GiB is "
            f"available. {fix}"
        )
