"""cuML's DBSCAN on the GPU: a thin adapter to its documented API.

cuML is brute force (work grows with N^2), so the rows are merged first and their counts passed as
``sample_weight``. cuML may number clusters and attach border points differently from scikit-learn: the
clusters are renumbered by their smallest core sample; border points are left as cuML attached them.
"""

from __future__ import annotations

import numpy as np

from gpuseg.engines.base import Job
from gpuseg.engines.merge import merge_rows

NOTE = "cuML attaches border points its own way: they may differ from scikit-learn's (core points agree)"


def renumber_by_first_core(labels: np.ndarray, core_indices: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, 2, ... in order of their smallest core sample index (scikit-learn's order)."""
    labels = np.asarray(labels)
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    if n_clusters == 0:
        return labels.copy()
    first = np.full(n_clusters, np.iinfo(np.int64).max, dtype=np.int64)
    core_indices = np.asarray(core_indices)
    np.minimum.at(first, labels[core_indices], core_indices)
    present = np.flatnonzero(first < np.iinfo(np.int64).max)
    rank = np.full(n_clusters, -1, dtype=np.int64)
    rank[present[np.argsort(first[present], kind="stable")]] = np.arange(present.shape[0])
    return np.where(labels >= 0, rank[np.maximum(labels, 0)], -1)


def missing() -> str | None:
    try:
        import cuml  # noqa: F401
    except ImportError:
        return "cuML is not installed (conda env from conda-env.yml, or pip install 'gpuseg[cuml]')"
    except Exception as exc:  # a broken RAPIDS install raises at import
        return f"cuML failed to import: {exc}"
    return None


def run_cuml(job: Job) -> np.ndarray:
    import cupy
    from cuml.cluster import DBSCAN

    with job.sub_stage("merge"):
        merged = merge_rows(job.features, job.weights)
    with job.sub_stage("to_device"):
        points = cupy.asarray(merged.points)
        weights = cupy.asarray(merged.weights)
    n = points.shape[0]
    with job.sub_stage("cuml"):
        model = DBSCAN(eps=job.eps, min_samples=job.min_samples, calc_core_sample_indices=True, output_type="cupy")
        model.fit(points, sample_weight=weights, out_dtype="int64" if n >= 2**31 - 1 else "int32")
        labels = cupy.asnumpy(model.labels_).astype(np.int64)
        core = cupy.asnumpy(model.core_sample_indices_).astype(np.int64)
    job.note = NOTE
    return renumber_by_first_core(labels, core)[merged.inverse]
