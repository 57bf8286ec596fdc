"""The command line, through Typer's CliRunner and as a real subprocess on real image files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import gpuseg
from gpuseg.cli.app import app
from gpuseg.data import shapes_image
from gpuseg.io.write import save_png
from gpuseg.segmentation.report import REPORT_KEYS

runner = CliRunner()
OPTS = ["--eps", "0.0523", "--min-samples", "8", "--color", "rgb", "--xy-scale", "0.01", "--picture-format", "png"]


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "scene.png"
    save_png(path, shapes_image(36, 48, seed=5)[0])
    return path


def check_outputs(stem, image_path):
    """Every output file against the labels the API gives for the same image and options."""
    expected = gpuseg.segment(image_path, eps=0.0523, min_samples=8, color="rgb", xy_scale=0.01).labels
    labels = np.load(f"{stem}.labels.npy")
    assert labels.dtype == np.int32 and labels.shape == expected.shape
    np.testing.assert_array_equal(labels, expected)
    png = cv2.imread(f"{stem}.labels.png", cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == expected.shape
    np.testing.assert_array_equal(png.astype(np.int64) - 1, expected)
    overlay = cv2.imread(f"{stem}.overlay.png", cv2.IMREAD_UNCHANGED)
    assert overlay.dtype == np.uint8 and overlay.shape == (*expected.shape, 3)
    assert (overlay[expected < 0] == 0).all()
    if (expected >= 0).any():
        assert overlay[expected >= 0].max() > 0
    report = json.loads(Path(f"{stem}.json").read_text())
    assert tuple(report)[: len(REPORT_KEYS)] == REPORT_KEYS
    assert report["n_clusters"] == int(expected.max()) + 1
    assert report["timings_s"]["save"] > 0
    return report


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert {"segment", "suggest", "cluster", "bench", "info"} <= listed


def test_segment_writes_four_checked_outputs(image_file, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(image_file), *OPTS, "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "scene.json").read_text())
    assert f"{report['n_clusters']} clusters, noise {report['noise_fraction']:.1%}" in result.output
    check_outputs(out / "scene", image_file)


def test_segment_defaults_write_beside_the_image(image_file):
    result = runner.invoke(app, ["segment", str(image_file)])
    assert result.exit_code == 0, result.output
    report = json.loads((image_file.parent / "scene.json").read_text())
    assert (report["eps"], report["min_samples"], report["color"], report["xy_scale"]) == (0.055, 20, "lab", 0.01)
    expected = gpuseg.segment(image_file).labels
    np.testing.assert_array_equal(np.load(image_file.parent / "scene.labels.npy"), expected)


def test_refuses_to_overwrite_then_overwrites(image_file, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["segment", str(image_file), *OPTS, "--out-dir", str(out)]).exit_code == 0
    before = (out / "scene.json").read_bytes()
    again = runner.invoke(app, ["segment", str(image_file), *OPTS, "--out-dir", str(out)])
    assert again.exit_code == 1
    assert "--overwrite" in again.output
    assert (out / "scene.json").read_bytes() == before
    forced = runner.invoke(app, ["segment", str(image_file), *OPTS, "--out-dir", str(out), "--overwrite"])
    assert forced.exit_code == 0


def test_one_bad_image_in_a_batch(image_file, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(bad), str(image_file), *OPTS, "--out-dir", str(out), "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert [r["source"] for r in document["reports"]] == [str(image_file)]
    assert document["failures"][0]["source"] == str(bad)
    assert "truncated" in document["failures"][0]["error"]
    assert (out / "scene.labels.npy").exists()
    assert not (out / "broken.labels.npy").exists()


def test_failure_mid_save_leaves_no_partial_file(image_file, tmp_path, monkeypatch):
    def half_then_fail(file, array, allow_pickle=False):
        file.write(b"\x93NUMPY half")
        raise OSError("No space left on device")

    monkeypatch.setattr("gpuseg.io.read.np.save", half_then_fail)
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(image_file), *OPTS, "--out-dir", str(out)])
    assert result.exit_code == 1
    assert "No space left" in result.output
    assert list(out.iterdir()) == []


def test_json_output_is_one_document(image_file, tmp_path):
    result = runner.invoke(app, ["segment", str(image_file), *OPTS, "--out-dir", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["failures"] == [] and len(document["reports"]) == 1


def test_bad_option_value_is_a_usage_error(image_file):
    result = runner.invoke(app, ["segment", str(image_file), "--color", "hsv"])
    assert result.exit_code == 2
    assert "hsv" in result.output


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [("--eps", "-1", "-1"), ("--eps", "0", "positive"), ("--eps", "nan", "nan"), ("--min-samples", "0", ">= 1")],
)
def test_bad_dbscan_parameters_are_usage_errors(image_file, tmp_path, option, value, says):
    args = ["segment", str(image_file), option, value, "--out-dir", str(tmp_path / "o")]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert option in result.output and says in result.output.replace("greater than or equal to", ">=")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_cluster_points(tmp_path, rng, suffix):
    from sklearn.cluster import DBSCAN

    X = rng.normal(size=(400, 2))
    src = tmp_path / f"points{suffix}"
    if suffix == ".npy":
        np.save(src, X)
    else:
        np.savetxt(src, X, delimiter=",", header="x,y", comments="")
    out = tmp_path / f"labels{suffix}"
    result = runner.invoke(app, ["cluster", str(src), "--eps", "0.31", "--min-samples", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = np.load(out) if suffix == ".npy" else np.loadtxt(out, dtype=np.int64)
    np.testing.assert_array_equal(labels, DBSCAN(eps=0.31, min_samples=5).fit(np.asarray(X)).labels_)


def test_cluster_bad_inputs(tmp_path):
    result = runner.invoke(app, ["cluster", str(tmp_path / "none.npy"), "--eps", "1", "--min-samples", "2"])
    assert result.exit_code == 1 and "no such file" in result.output
    (tmp_path / "p.txt").write_text("1,2\n")
    result = runner.invoke(app, ["cluster", str(tmp_path / "p.txt"), "--eps", "1", "--min-samples", "2"])
    assert result.exit_code == 1 and ".npy or .csv" in result.output


def test_info():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "grid" in result.output and "cells" in result.output and "gpu:" in result.output


def test_real_subprocess(image_file, tmp_path):
    out = tmp_path / "sub"
    proc = subprocess.run(
        [sys.executable, "-m", "gpuseg", "segment", str(image_file), *OPTS, "--out-dir", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    check_outputs(out / "scene", image_file)
    missing = subprocess.run(
        [sys.executable, "-m", "gpuseg", "segment", str(tmp_path / "nope.png")], capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_too_many_clusters_for_the_png_writes_nothing(tmp_path, monkeypatch):
    from gpuseg.segmentation.outputs import save_outputs
    from gpuseg.segmentation.pipeline import SegmentResult

    labels = np.arange(70_000, dtype=np.int64).reshape(100, 700)
    result = SegmentResult(labels=labels, image=np.zeros((100, 700, 3), np.uint8), features=None, report={})
    with pytest.raises(ValueError, match="70000 clusters do not fit in a 16-bit label PNG"):
        save_outputs(result, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
