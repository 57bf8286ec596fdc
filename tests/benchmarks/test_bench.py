"""`gpuseg bench`: a real quick run (a smoke test whose assertions are real), failing children, errors and plots."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from gpuseg.benchmarks import suite as benchmark
from gpuseg.benchmarks.suite import FAULT_ENV, PHOTO_MEGAPIXELS, Case, Row, engine_runs, suite
from gpuseg.cli.app import app

BLOBS = "make_blobs 750 (seed example)"
LOGO = "RGBA logo 500x500, alpha feature (seed recipe)"


def run_bench(args, out, env=None, timeout=600):
    """`python -m gpuseg bench ARGS --out OUT` as a real process; the process and the rows it wrote."""
    proc = subprocess.run(
        [sys.executable, "-m", "gpuseg", "bench", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return proc, json.loads((out / "bench.json").read_text())["rows"]


@pytest.mark.slow  # the quick suite in child processes
def test_quick_bench_writes_checked_outputs_without_scikit_image(tmp_path):
    # A plain install has no scikit-image: a package that refuses to import stands in for its absence.
    blocker = tmp_path / "no-skimage" / "skimage"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ModuleNotFoundError("scikit-image is absent", name="skimage")\n')
    pythonpath = os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))
    out = tmp_path / "bench"
    proc, rows = run_bench(["--quick", "--repeat", "1"], out, env={"PYTHONPATH": pythonpath})
    assert proc.returncode == 0, proc.stderr
    document = json.loads((out / "bench.json").read_text())
    assert {"cpu", "gpu", "numba", "scikit-learn"} <= set(document["machine"])
    with (out / "bench.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [r for r in rows if r["error"]]
    for row in rows:  # every row has a time or a reason
        assert (row["median_s"] is not None and row["median_s"] > 0) != bool(row["reason"]), row
    compared = [r for r in rows if r["identical"] is not None]
    assert compared and all(r["identical"] for r in compared)
    ran = {(r["case"], r["engine"]) for r in rows if r["median_s"]}
    assert {(BLOBS, "sklearn"), (LOGO, "cells")} <= ran
    assert {("Grace Hopper photo 0.25 MP rgb", "cells"), ("Grace Hopper photo 0.25 MP rgb+xy", "grid")} <= ran
    refused = [r for r in rows if r["engine"] == "sklearn" and r["case"] == LOGO][0]
    assert "scikit-learn would need about" in refused["reason"] and "GiB is available" in refused["reason"]


@pytest.mark.slow  # the quick suite in child processes
def test_killed_child_is_an_error_row_and_the_run_goes_on(tmp_path):
    out = tmp_path / "bench"
    args = ["--quick", "--engine", "cells", "--device", "cpu", "--repeat", "1"]
    proc, rows = run_bench(args, out, env={FAULT_ENV: f"kill:{BLOBS}"}, timeout=300)
    assert proc.returncode == 1
    killed = [r for r in rows if r["case"] == BLOBS]
    assert len(killed) == 1 and killed[0]["error"] and killed[0]["median_s"] is None
    assert killed[0]["reason"].startswith("killed by SIGKILL: out of memory?")
    assert "killed by SIGKILL" in proc.stderr and "1 of 3 runs failed" in proc.stderr
    assert [r["case"] for r in rows[1:]] == [LOGO, "Grace Hopper photo 0.25 MP rgb"]
    assert all(r["median_s"] and not r["error"] for r in rows[1:])  # the cases after the killed one ran


@pytest.mark.parametrize(
    ("action", "timeout", "reason"),
    [
        ("exit", 120, "exited with code 3 without a result"),
        ("raise", 120, f"RuntimeError: {FAULT_ENV} asked this child to raise"),
        ("hang", 1, "timed out: still running after 1 s, stopped"),
    ],
)
def test_child_failures_are_errors_with_what_happened(tmp_path, monkeypatch, action, timeout, reason):
    case = Case("failing", "blobs750", 0.3, 10)
    monkeypatch.setenv(FAULT_ENV, f"{action}:failing")
    result = benchmark._run_child(case, "cells", "cpu", 1, tmp_path / "labels.npy", timeout=timeout)
    assert result["error"] and result["reason"].startswith(reason)


def test_labels_that_differ_from_the_reference_are_errors_except_cumls(tmp_path):
    reference, other = np.array([0, 0, 1, -1]), np.array([0, 0, 0, -1])
    labels = {}
    for key, value in {"sklearn/cpu": reference, "cells/cpu": other, "cuml/gpu": other}.items():
        labels[key] = tmp_path / f"{key.replace('/', '-')}.npy"
        np.save(labels[key], value)
    rows = [Row("c", "sklearn", "cpu"), Row("c", "cells", "cpu"), Row("c", "cuml", "gpu")]
    benchmark._compare(Case("c", "blobs750", 0.3, 10), rows, labels)
    assert [(r.identical, r.error) for r in rows] == [(True, False), (False, True), (False, False)]
    document = {"rows": [vars(r) for r in rows]}
    assert benchmark.errors(document) == ["c | cells on cpu: labels differ from sklearn's"]


def fake_document(*rows: Row) -> dict:
    return {"machine": {"gpuseg": "x", "cpu": "x", "gpu": "none"}, "rows": [vars(r) for r in rows]}


def photo_row(engine: str, **kw) -> Row:
    return Row("Grace Hopper photo 0.25 MP rgb", engine, "cpu", megapixels=0.25, family="photo rgb", **kw)


def test_bench_command_exits_1_on_errors_after_writing_and_draws_no_empty_plot(tmp_path, monkeypatch):
    document = fake_document(
        photo_row("sklearn", reason="engine='sklearn': scikit-learn would need about 23 GiB"),
        photo_row("cells", reason="ModuleNotFoundError: No module named 'skimage'", error=True),
    )
    monkeypatch.setattr(benchmark, "run_suite", lambda *a, **k: document)
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.png").write_bytes(b"an older run's plot")
    result = CliRunner().invoke(app, ["bench", "--quick", "--out", str(out)])
    assert result.exit_code == 1
    assert "Grace Hopper photo 0.25 MP rgb | cells on cpu: ModuleNotFoundError" in result.stderr
    assert "1 of 2 runs failed" in result.stderr
    assert "bench.png not written: no photo case ran" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["bench.csv", "bench.json"]
    assert [r["error"] for r in json.loads((out / "bench.json").read_text())["rows"]] == [False, True]


def test_bench_command_exits_0_when_only_the_machine_limits_rows(tmp_path, monkeypatch):
    limits = fake_document(
        Row(BLOBS, "cells", "gpu", reason="no GPU: CuPy is not installed"),
        Row(BLOBS, "cuml", "gpu", reason="cuML is not installed"),
    )
    monkeypatch.setattr(benchmark, "run_suite", lambda *a, **k: limits)
    result = CliRunner().invoke(app, ["bench", "--quick", "--out", str(tmp_path / "bench")])
    assert result.exit_code == 0, result.output
    assert "bench.png not written" in result.output and not (tmp_path / "bench" / "bench.png").exists()


def test_bench_out_that_is_a_file_is_refused_before_running(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "run_suite", lambda *a, **k: pytest.fail("the suite ran"))
    (tmp_path / "taken").write_text("")
    result = CliRunner().invoke(app, ["bench", "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2
    assert "--out" in result.stderr and "is a file: give a folder" in result.stderr


def test_bench_case_option_runs_only_the_cases_named(tmp_path, monkeypatch):
    seen = []

    def run_suite(cases, **kwargs):
        seen.extend(c.name for c in cases)
        return fake_document(Row(BLOBS, "cuml", "gpu", reason="cuML is not installed"))

    monkeypatch.setattr(benchmark, "run_suite", run_suite)
    result = CliRunner().invoke(app, ["bench", "--case", "40K", "--out", str(tmp_path / "bench")])
    assert result.exit_code == 0, result.output
    assert seen == ["blobs 40k points 6-D", "blobs 40k points 8-D"]
    result = CliRunner().invoke(app, ["bench", "--case", "nothing like it", "--out", str(tmp_path / "bench")])
    assert result.exit_code == 2
    assert "--case 'nothing like it': no case name contains it" in result.stderr and "blobs 40k" in result.stderr


def test_bench_help_says_what_the_cases_are():
    text = " ".join(CliRunner().invoke(app, ["bench", "--help"]).output.split())
    assert "seed" not in text
    assert "make_blobs" in text and "RGBA logo" in text and "Grace Hopper" in text


def test_suite_plan_uses_inputs_of_a_plain_install():
    cases = suite((0.25, 2.0))
    names = [c.name for c in cases]
    assert "Grace Hopper photo tiled to 2 MP rgb+xy" in names and "blobs 1M points 3-D" in names
    assert "generated shapes 1411x1411 rgb+xy" in names
    sources = {"blobs750", "logo", "blobs1m2", "blobs1m3", "shapes", "photo", "blobs40k6", "blobs40k8", "photo-rows"}
    assert {c.source for c in cases} == sources
    rows = next(c for c in cases if c.source == "photo-rows")
    assert engine_runs(rows, device="cpu") == [("sklearn", "cpu"), ("auto", "cpu")]
    X = benchmark.make_features(rows)
    assert X.points is not None and X.points.shape[1] == 5 and not X.is_image  # plain rows, not an image
    xy = next(c for c in cases if c.name == "Grace Hopper photo tiled to 2 MP rgb+xy")
    assert engine_runs(xy) == [("sklearn", "cpu"), ("grid", "cpu"), ("grid", "gpu"), ("cuml", "gpu")]
    assert engine_runs(xy, engines=["grid"], device="cpu") == [("grid", "cpu")]
    color = next(c for c in cases if c.name == "Grace Hopper photo 0.25 MP rgb")
    assert ("sklearn-merged", "cpu") in engine_runs(color) and ("cells", "gpu") in engine_runs(color)


def test_photo_is_matplotlibs_grace_hopper_of_the_size_in_the_names():
    image = benchmark.photo_image()
    assert image.shape == (600, 512, 3) and image.dtype == np.uint8
    assert image.shape[0] * image.shape[1] / 1e6 == PHOTO_MEGAPIXELS


runner = CliRunner()


def test_pipeline_bench_runs_a_generated_folder_both_ways(tmp_path):
    out = tmp_path / "pipe"
    result = runner.invoke(
        app, ["bench", "--pipeline", "--device", "cpu", "--images", "3", "--sizes", "0.02", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    r = json.loads((out / "pipeline.json").read_text())["result"]
    assert r["images"] == 3 and r["failed"] == 0 and r["identical_labels"] is True
    assert r["pipeline_s"] > 0 and r["one_at_a_time_s"] > 0 and r["skip_existing_rerun_s"] < r["pipeline_s"]


@pytest.mark.parametrize("extra", [["--quick"], ["--case", "40k"], ["--sizes", "0.1,0.2"], ["--repeat", "2"]])
def test_pipeline_bench_refuses_the_suite_options(tmp_path, extra):
    result = runner.invoke(app, ["bench", "--pipeline", "--out", str(tmp_path / "o"), *extra], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "--pipeline takes" in result.output
