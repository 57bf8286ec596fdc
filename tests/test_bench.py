"""`gpuseg bench --quick` as a real run (a smoke test whose assertions are real) and the suite's plan."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from gpuseg import benchmark
from gpuseg.benchmark import PHOTO_MEGAPIXELS, engine_runs, suite
from gpuseg.cli import app


def test_quick_bench_writes_checked_outputs(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "gpuseg", "bench", "--quick", "--repeat", "2", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    document = json.loads((out / "bench.json").read_text())
    rows = document["rows"]
    assert {"cpu", "gpu", "numba", "scikit-learn"} <= set(document["machine"])
    with (out / "bench.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in rows:  # every row has a time or a reason
        assert (row["median_s"] is not None and row["median_s"] > 0) != bool(row["reason"]), row
    compared = [r for r in rows if r["identical"] is not None]
    assert compared and all(r["identical"] for r in compared)
    ran = {(r["case"], r["engine"]) for r in rows if r["median_s"]}
    assert ("RGBA logo 500x500, alpha feature (seed recipe)", "cells") in ran
    assert ("Grace Hopper photo 0.25 MP rgb+xy", "grid") in ran
    refused = [r for r in rows if r["engine"] == "sklearn" and r["case"].startswith("RGBA logo")][0]
    assert "scikit-learn would need about" in refused["reason"] and "GiB is available" in refused["reason"]


def test_bench_help_says_what_the_cases_are():
    text = " ".join(CliRunner().invoke(app, ["bench", "--help"]).output.split())
    assert "seed" not in text
    assert "make_blobs" in text and "RGBA logo" in text and "Grace Hopper" in text


def test_suite_plan_uses_inputs_of_a_plain_install():
    cases = suite((0.25, 2.0))
    names = [c.name for c in cases]
    assert "Grace Hopper photo tiled to 2 MP rgb+xy" in names and "blobs 1M points 3-D" in names
    assert "generated shapes 1411x1411 rgb+xy" in names
    assert {c.source for c in cases} == {"blobs750", "logo", "blobs1m2", "blobs1m3", "shapes", "photo"}
    xy = next(c for c in cases if c.name == "Grace Hopper photo tiled to 2 MP rgb+xy")
    assert engine_runs(xy) == [("sklearn", "cpu"), ("grid", "cpu"), ("grid", "gpu"), ("cuml", "gpu")]
    assert engine_runs(xy, engines=["grid"], device="cpu") == [("grid", "cpu")]
    colour = next(c for c in cases if c.name == "Grace Hopper photo 0.25 MP rgb")
    assert ("sklearn-merged", "cpu") in engine_runs(colour) and ("cells", "gpu") in engine_runs(colour)


def test_photo_is_matplotlibs_grace_hopper_of_the_size_in_the_names():
    image = benchmark.photo_image()
    assert image.shape == (600, 512, 3) and image.dtype == np.uint8
    assert image.shape[0] * image.shape[1] / 1e6 == PHOTO_MEGAPIXELS
