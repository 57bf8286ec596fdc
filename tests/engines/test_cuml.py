"""The cuML engine: its adapter against a stand-in written to cuML's documented API (runs everywhere), and
against real cuML where RAPIDS is installed (skipped, with the reason, elsewhere)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from sklearn.cluster import DBSCAN as SklearnDBSCAN

from gpuseg._core.device import Device
from gpuseg.data import shapes_image
from gpuseg.engines.base import Job
from gpuseg.features import build_features, points_features


class StandInDBSCAN:
    """cuml.cluster.DBSCAN's documented surface: DBSCAN(eps=, min_samples=, calc_core_sample_indices=,
    output_type=).fit(X, sample_weight=, out_dtype=) -> labels_, core_sample_indices_. Numbers its clusters
    in reverse, as cuML may number them in any order."""

    calls: list[dict] = []

    def __init__(self, *, eps, min_samples, calc_core_sample_indices=True, output_type=None):
        self.eps, self.min_samples = eps, min_samples

    def fit(self, X, sample_weight=None, out_dtype="int32"):
        StandInDBSCAN.calls.append({"n": len(X), "sample_weight": sample_weight, "out_dtype": out_dtype})
        model = SklearnDBSCAN(eps=self.eps, min_samples=self.min_samples).fit(X, sample_weight=sample_weight)
        labels = model.labels_
        top = labels.max()
        self.labels_ = np.where(labels >= 0, top - labels, -1).astype(out_dtype)
        self.core_sample_indices_ = model.core_sample_indices_
        return self


@pytest.fixture
def stand_in_cuml(monkeypatch):
    cuml = types.ModuleType("cuml")
    cuml.cluster = types.ModuleType("cuml.cluster")
    cuml.cluster.DBSCAN = StandInDBSCAN
    cupy = types.ModuleType("cupy")
    cupy.asarray = np.asarray
    cupy.asnumpy = np.asarray
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.cluster", cuml.cluster)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    StandInDBSCAN.calls = []
    return cuml


def test_adapter_merges_rows_passes_weights_and_renumbers(stand_in_cuml, rng):
    from gpuseg.engines.cuml import NOTE, run_cuml

    X = rng.integers(0, 8, size=(3000, 2)) / 4.0  # 81 distinct rows
    job = Job(points_features(X), 0.3, 60, None, Device("gpu", "stand-in"))
    labels = run_cuml(job)
    call = StandInDBSCAN.calls[-1]
    assert call["n"] == len(np.unique(X, axis=0))
    assert call["sample_weight"].sum() == len(X)
    assert call["out_dtype"] == "int32"
    np.testing.assert_array_equal(labels, SklearnDBSCAN(eps=0.3, min_samples=60).fit(X).labels_)
    assert job.note == NOTE


def test_adapter_on_image_colors(stand_in_cuml):
    from gpuseg.engines.cuml import run_cuml

    features = build_features(shapes_image(30, 40, seed=2)[0])
    labels = run_cuml(Job(features, 0.0311, 12, None, Device("gpu", "stand-in")))
    np.testing.assert_array_equal(labels, SklearnDBSCAN(eps=0.0311, min_samples=12).fit(features.matrix()).labels_)


def test_real_cuml_core_points_match_sklearn():
    pytest.importorskip("cuml", reason="cuML is not installed: its engine runs only where RAPIDS is")
    from gpuseg.engines.run import cluster_features

    X = np.random.default_rng(0).normal(size=(2000, 3))
    run = cluster_features(points_features(X), eps=0.41, min_samples=8, engine="cuml", device="gpu")
    ref = SklearnDBSCAN(eps=0.41, min_samples=8).fit(X)
    core = ref.core_sample_indices_
    np.testing.assert_array_equal(run.labels[core], ref.labels_[core])
