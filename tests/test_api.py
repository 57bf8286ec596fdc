"""The public API: dbscan() and segment() parameters, devices, engines and the report."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from sklearn.cluster import DBSCAN

import gpuseg
from gpuseg._core.device import gpu_status
from gpuseg.data import shapes_image
from gpuseg.errors import DeviceError, EngineUnavailableError, ImageError
from gpuseg.segmentation.report import REPORT_KEYS, STAGES

NO_GPU = not gpu_status().usable


def test_public_names_are_the_documented_functions():
    import gpuseg.engines.run
    import gpuseg.features
    import gpuseg.io.read
    import gpuseg.segmentation.pipeline
    import gpuseg.tuning.suggest

    assert gpuseg.dbscan is gpuseg.engines.run.dbscan
    assert gpuseg.pixel_features is gpuseg.features.pixel_features
    assert gpuseg.load_image is gpuseg.io.read.load_image
    assert gpuseg.segment is gpuseg.segmentation.pipeline.segment
    assert gpuseg.suggest_eps is gpuseg.tuning.suggest.suggest_eps
    assert issubclass(gpuseg.GpusegError, Exception)
    assert set(gpuseg.__all__) == {*gpuseg._LAZY, "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'segmnet'"):
        gpuseg.segmnet  # noqa: B018


def test_dbscan_matches_sklearn_on_random_duplicates(rng):
    X = rng.integers(0, 6, size=(3000, 3)).astype(float) / 5  # heavy duplicates
    w = rng.uniform(0.5, 2.0, X.shape[0])
    got = gpuseg.dbscan(X, eps=0.25, min_samples=40, sample_weight=w)
    np.testing.assert_array_equal(got, DBSCAN(eps=0.25, min_samples=40).fit(X, sample_weight=w).labels_)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.0}, "eps=0.0 must be a positive finite number"),
        ({"eps": -1.0}, "eps=-1.0 must be"),
        ({"eps": float("inf")}, "eps=inf must be"),
        ({"min_samples": 0}, "min_samples=0 must be an integer >= 1"),
        ({"min_samples": 2.5}, "min_samples=2.5 must be an integer"),
        ({"sample_weight": np.ones(3)}, r"sample_weight has shape \(3,\); it needs one weight per sample: \(10,\)"),
        ({"sample_weight": np.full(10, np.nan)}, "sample_weight has NaN"),
        ({"device": "tpu"}, "device='tpu' is not one of auto, cpu, gpu"),
        (
            {"engine": "hdbscan"},
            "engine='hdbscan' is not one of auto, grid, cells, tree, sklearn, sklearn-merged, cuml",
        ),
    ],
)
def test_dbscan_bad_parameters(kwargs, message):
    params = {"eps": 0.5, "min_samples": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        gpuseg.dbscan(np.zeros((10, 2)), **params)


def test_dbscan_refuses_nan_rows():
    X = np.zeros((4, 2))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="X has NaN or infinite values"):
        gpuseg.dbscan(X, eps=0.5, min_samples=2)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
def test_gpu_without_a_gpu_is_an_error_not_a_cpu_run():
    with pytest.raises(DeviceError, match="device='gpu' was asked for, but"):
        gpuseg.dbscan(np.zeros((10, 2)), eps=0.5, min_samples=2, device="gpu")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
def test_auto_falls_back_to_cpu_and_says_why():
    result = gpuseg.segment(shapes_image(20, 30)[0], eps=0.0523, min_samples=5)
    assert result.report["device"] == "cpu"
    assert result.report["fallback_reason"]


def test_engine_on_wrong_device_is_an_error():
    with pytest.raises(EngineUnavailableError, match="engine='sklearn' runs on cpu only, not device='gpu'"):
        gpuseg.dbscan(np.zeros((10, 2)), eps=0.5, min_samples=2, engine="sklearn", device="gpu")


def test_cuml_engine_says_what_is_missing():
    try:
        import cuml  # noqa: F401
    except ImportError:
        with pytest.raises(EngineUnavailableError, match="cuML is not installed"):
            gpuseg.dbscan(np.zeros((10, 2)), eps=0.5, min_samples=2, engine="cuml")
    else:  # pragma: no cover - only where RAPIDS is installed
        pytest.skip("cuML is installed: its engine is tested in tests/engines/test_cuml.py")


def test_sklearn_memory_guard_refuses_the_seed_recipe(monkeypatch):
    from gpuseg.data import logo_image
    from gpuseg.engines import sklearn as sk
    from gpuseg.errors import MemoryLimitError
    from gpuseg.features import build_features

    X = build_features(logo_image(500), alpha="feature").matrix()
    need = sk.predicted_memory(X, 0.01)
    assert need > 16 * 2**30  # the seed's report: more than 16 GB
    monkeypatch.setattr(sk, "available_memory", lambda: 24 * 2**30)
    with pytest.raises(MemoryLimitError, match="engine='sklearn': scikit-learn would need about .* Use engine='auto'"):
        gpuseg.dbscan(X, eps=0.01, min_samples=500, engine="sklearn")


def test_segment_report_has_stable_keys_and_is_json():
    image, _ = shapes_image(40, 60, seed=2)
    result = gpuseg.segment(image, eps=0.0523, min_samples=10, color="rgb", xy_scale=0.01)
    report = json.loads(json.dumps(result.report))
    assert tuple(report) == REPORT_KEYS
    assert tuple(report["timings_s"]) == STAGES
    assert all(v >= 0 for v in report["timings_s"].values())
    assert report["engine"] == "grid"
    assert report["features"] == ["r", "g", "b", "x", "y"]
    assert report["n_samples"] == 40 * 60
    assert result.labels.shape == (40, 60)
    assert report["n_clusters"] == int(result.labels.max()) + 1
    assert sum(report["cluster_sizes"]) == int((result.labels >= 0).sum())
    assert report["noise_fraction"] == pytest.approx((result.labels < 0).mean())
    X = result.features.matrix()
    np.testing.assert_array_equal(result.labels.ravel(), DBSCAN(eps=0.0523, min_samples=10).fit(X).labels_)


def test_segment_alpha_mask_labels_unsampled_pixels_minus_one():
    from gpuseg.data import logo_image

    image = logo_image(60)
    result = gpuseg.segment(image, eps=0.0303, min_samples=5, alpha="mask", xy_scale=None, color="rgb")
    transparent = image[..., 3] == 0
    assert (result.labels[transparent] == -1).all()
    assert result.report["n_samples"] == int((~transparent).sum())


def test_segment_from_path_and_bad_path(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        gpuseg.segment(tmp_path / "missing.png")
    from gpuseg.io.write import save_png

    save_png(tmp_path / "s.png", shapes_image(30, 40)[0])
    result = gpuseg.segment(tmp_path / "s.png", eps=0.0523, min_samples=5)
    assert result.report["source"] == str(tmp_path / "s.png")
    assert result.report["timings_s"]["load"] > 0


def test_segment_result_pickles():
    import pickle

    result = gpuseg.segment(shapes_image(20, 20)[0], eps=0.0523, min_samples=5)
    back = pickle.loads(pickle.dumps(result))
    np.testing.assert_array_equal(back.labels, result.labels)


def test_import_is_light():
    import subprocess

    heavy = "('numba', 'sklearn', 'cupy', 'cv2')"
    code = f"import gpuseg, gpuseg.cli.app, sys; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class OutOfMemoryError(Exception):
    """Stands for cupy.cuda.memory.OutOfMemoryError (matched by name)."""


@pytest.mark.parametrize("device", ["auto", "gpu"])
def test_gpu_out_of_memory_falls_back_under_auto_and_is_an_error_under_gpu(monkeypatch, device):
    from gpuseg._core.device import Device
    from gpuseg.engines import gpu_common, grid
    from gpuseg.engines import run as cluster
    from gpuseg.engines.grid import cuda as grid_cuda

    class FakeGpu(Device):
        def synchronize(self):
            pass

    monkeypatch.setattr(
        cluster, "resolve_device", lambda d: Device("cpu", "cpu") if d == "cpu" else FakeGpu("gpu", "fake")
    )
    monkeypatch.setattr(gpu_common, "features_to_device", lambda f: f)
    monkeypatch.setattr(grid_cuda, "whole_image_fits", lambda job: True)

    run_grid = grid.run_grid

    def out_of_memory(job):
        if job.device.kind == "cpu":
            return run_grid(job)
        raise OutOfMemoryError("Out of memory allocating 1,000,000,000 bytes")

    monkeypatch.setattr(grid, "run_grid", out_of_memory)
    features = build_features_for_oom()
    if device == "gpu":
        with pytest.raises(DeviceError, match="the GPU ran out of memory .* use device='cpu'"):
            cluster.cluster_features(features, eps=0.0523, min_samples=5, device=device)
    else:
        run = cluster.cluster_features(features, eps=0.0523, min_samples=5, device=device)
        assert run.device.kind == "cpu"
        assert "ran out of memory" in run.device.fallback_reason
        expected = cluster.cluster_features(features, eps=0.0523, min_samples=5, device="cpu").labels
        np.testing.assert_array_equal(run.labels, expected)


def build_features_for_oom():
    from gpuseg.features import build_features

    return build_features(shapes_image(20, 24)[0], xy_scale=0.01)
