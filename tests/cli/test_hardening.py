"""Every input either segments or fails cleanly: zero clusters, failures inside a batch, colliding outputs,
interrupts and signals, the umask, extreme stencils, device handling and the defaults' tie."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PROMPTLY_S, interrupt_library_call, oracle_dbscan, sqdist_matrix
from typer.testing import CliRunner

import gpuseg
import gpuseg.segmentation.explain
from gpuseg.cli.app import app
from gpuseg.data import shapes_image
from gpuseg.errors import DeviceError, OutputExistsError
from gpuseg.io.write import OutputSet, save_png
from gpuseg.params import PARAMS
from gpuseg.segmentation.outputs import save_outputs

runner = CliRunner()
ALL_PICTURES = ("overlay", "mean", "boundaries", "noise")


def files_in(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def scene(tmp_path):
    path = tmp_path / "scene.png"
    save_png(path, shapes_image(36, 48, seed=5)[0])
    return path


# ------------------------------------------------------------------------------------------ zero clusters


@pytest.mark.parametrize(
    ("image", "options"),
    [
        (np.full((1, 1, 3), 7, np.uint8), {}),
        (shapes_image(20, 24, seed=1)[0], {"min_samples": 10_000}),
        (np.zeros((12, 10, 4), np.uint8), {"alpha": "mask"}),  # fully transparent: no samples at all
    ],
    ids=["one-pixel", "min-samples-huge", "transparent-mask"],
)
def test_zero_clusters_write_every_picture(tmp_path, image, options):
    result = gpuseg.segment(image, device="cpu", **options)
    assert result.report["n_clusters"] == 0 and (result.labels == -1).all()
    panel = gpuseg.segmentation.explain.explain_panel(result, device="cpu")
    written = save_outputs(result, tmp_path / "x", pictures=ALL_PICTURES, explain=panel)
    assert files_in(tmp_path) == sorted(p.name for p in written)
    overlay = gpuseg.load_image(tmp_path / "x.overlay.jpg")
    assert overlay.shape[:2] == image.shape[:2] and (overlay == 0).all()  # noise is black


def test_one_failing_image_does_not_stop_the_batch(tmp_path, monkeypatch):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    for path in (first, second):
        save_png(path, shapes_image(20, 24, seed=2)[0])
    from gpuseg.scale.folder import FolderPipeline

    real = FolderPipeline._cluster

    def broken_for_a(self, decoded):
        if decoded.item.source.name == "a.png":
            raise RuntimeError("something nobody expected")
        return real(self, decoded)

    monkeypatch.setattr(FolderPipeline, "_cluster", broken_for_a)
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(first), str(second), "--out-dir", str(out), "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert [f["source"] for f in document["failures"]] == [str(first)]
    assert "unexpected RuntimeError: something nobody expected" in document["failures"][0]["error"]
    assert "Traceback" not in result.output
    assert [r["source"] for r in document["reports"]] == [str(second)]
    names = sorted(f"b{s}" for s in (".json", ".labels.npy", ".labels.png", ".overlay.jpg"))
    assert files_in(out) == sorted([*names, "manifest.jsonl"])


def test_all_noise_image_in_a_batch_is_a_result_not_a_failure(tmp_path):
    noise_only = tmp_path / "dot.png"
    save_png(noise_only, np.full((1, 1, 3), 9, np.uint8))
    result = runner.invoke(app, ["segment", str(noise_only), "--out-dir", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reports"][0]["n_clusters"] == 0


# -------------------------------------------------------------------------------------------- xy_scale


@pytest.mark.parametrize("value", ["-1", "nan", "-inf", "inf"])
def test_cli_refuses_negative_or_non_finite_xy_scale(scene, tmp_path, value):
    result = runner.invoke(app, ["segment", str(scene), "--xy-scale", value, "--out-dir", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--xy-scale" in result.output and "colour only" in result.output
    assert not (tmp_path / "o").exists()


def test_cli_xy_scale_zero_is_color_only(scene, tmp_path):
    result = runner.invoke(app, ["segment", str(scene), "--xy-scale", "0", "--out-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["reports"][0]
    assert report["xy_scale"] is None and report["features"] == ["L", "a*", "b*"]
    assert report == json.loads((tmp_path / "scene.json").read_text())


# ----------------------------------------------------------------------------------- outputs and writing


def test_colliding_outputs_are_refused_before_any_work(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        save_png(tmp_path / folder / "x.png", shapes_image(10, 12)[0])
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["segment", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "--out-dir", str(out)]
    )
    assert result.exit_code == 2
    assert "would both write" in result.output and "--out-dir" in result.output
    assert not out.exists()
    twice = runner.invoke(app, ["segment", str(tmp_path / "a" / "x.png"), str(tmp_path / "a" / "x.png")])
    assert twice.exit_code == 2 and "given twice" in twice.output


def test_report_lists_its_outputs(scene, tmp_path):
    result = runner.invoke(app, ["segment", str(scene), "--out-dir", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "scene.json").read_text())
    assert sorted(Path(p).name for p in report["outputs"]) == files_in(tmp_path / "o")


def process_umask() -> int:
    """The umask, read without setting it (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise LookupError("no Umask line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the umask from /proc (Linux)")
def test_the_umask_is_never_touched_and_applies(tmp_path, monkeypatch):
    def no_umask(mask):
        raise AssertionError("changing the umask changes process-global state")

    monkeypatch.setattr(os, "umask", no_umask)
    result = gpuseg.segment(shapes_image(16, 20)[0], device="cpu")
    written = save_outputs(result, tmp_path / "x", pictures=ALL_PICTURES)
    assert {p.stat().st_mode & 0o777 for p in written} == {0o666 & ~process_umask()}


def test_a_failing_report_write_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(document):
        def write(f):
            f.write(b'{"half": ')
            raise OSError(28, "No space left on device")

        return write

    monkeypatch.setattr(gpuseg.segmentation.outputs, "json_writer", disk_full)
    result = gpuseg.segment(shapes_image(16, 20)[0], device="cpu")
    with pytest.raises(OSError, match="No space left"):
        save_outputs(result, tmp_path / "x", pictures=ALL_PICTURES)
    assert files_in(tmp_path) == []


def test_a_file_that_appears_meanwhile_is_not_replaced(tmp_path):
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    outputs = OutputSet([first, second])
    outputs.stage(first, lambda f: f.write(b"new a"))
    outputs.stage(second, lambda f: f.write(b"new b"))
    second.write_bytes(b"someone else's")
    with pytest.raises(OutputExistsError, match="appeared while it was being written"), outputs:
        outputs.commit()
    assert second.read_bytes() == b"someone else's"
    assert files_in(tmp_path) == ["b.bin"]


def test_suggest_does_not_replace_its_plot_unasked(scene):
    plot = scene.with_name("scene.kdist.png")
    plot.write_bytes(b"mine")
    result = runner.invoke(app, ["suggest", str(scene)])
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert plot.read_bytes() == b"mine"
    result = runner.invoke(app, ["suggest", str(scene), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ interrupts, signals


def slow_writer(from_image: int = 1) -> str:
    """A command line whose PNG writer hangs from the ``from_image``-th image on, after writing a few bytes."""
    return f"""
import sys, time
import gpuseg.segmentation.outputs

real = gpuseg.segmentation.outputs.png_writer
images = []

def slow_png(image):
    if image.ndim == 2:  # the label PNG: one per image
        images.append(1)
    if len(images) < {from_image}:
        return real(image)
    def write(f):
        f.write(b"partial")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
    return write

gpuseg.segmentation.outputs.png_writer = slow_png
from gpuseg.cli.app import app
app(sys.argv[1:])
"""


SLOW_CLUSTER = """
import sys
import gpuseg.engines.grid as grid

real = grid.run_grid

def announced(job):
    print("clustering", flush=True)
    return real(job)

grid.run_grid = announced
from gpuseg.cli.app import app
app(sys.argv[1:])
"""


def run_and_signal(script: str, args: list[str], wait_for: str, sig: int, delay: float = 0.3):
    """Start ``script`` in a real process, wait until it prints ``wait_for``, send ``sig``; (exit code, stderr,
    seconds from the signal to the exit)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores SIGINT
    )
    try:
        for line in proc.stdout:
            if wait_for in line:
                break
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
        return code, proc.stderr.read(), time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # a signal sent to a subprocess mid-run
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_writing_leaves_nothing(scene, tmp_path, sig, code):
    out = tmp_path / "out"
    args = ["segment", str(scene), "--out-dir", str(out), "--save", "overlay,mean"]
    got, stderr, seconds = run_and_signal(slow_writer(), args, "writing", sig)
    assert got == code, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert seconds < PROMPTLY_S  # the writer would hang for a minute
    assert files_in(out) == []


@pytest.mark.slow  # a signal sent to a subprocess mid-run
def test_ctrl_c_while_clustering_stops_at_once(tmp_path):
    image = tmp_path / "noise.png"
    save_png(image, np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8))
    out = tmp_path / "out"
    # a stencil of radius 39 (about 4,800 offsets) whose weight never reaches min_samples: every neighbourhood
    # is summed whole, and every pixel looks for a core neighbour: about 20 s of work on two cores
    args = ["segment", str(image), "--eps", "40", "--xy-scale", "1", "--min-samples", "100000"]
    args += ["--engine", "grid", "--out-dir", str(out)]
    got, stderr, seconds = run_and_signal(SLOW_CLUSTER, args, "clustering", signal.SIGINT, delay=1.0)
    assert got == 130, stderr
    assert seconds < PROMPTLY_S, f"took {seconds:.1f} s to stop"
    assert not out.exists() or files_in(out) == []


@pytest.mark.slow  # a signal sent to a subprocess mid-run
def test_interrupted_kernels_stop_in_the_library(tmp_path):
    raised_after, stopped_within = interrupt_library_call(
        "image = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)\n"
        'options = dict(eps=40, xy_scale=1, min_samples=100_000, engine="grid", device="cpu")  # 20 s of work',
        "gpuseg.segment(image[:20, :20], **options)",
        "gpuseg.segment(image, **options)",
    )
    assert raised_after < 1.0 + PROMPTLY_S and stopped_within < PROMPTLY_S


# --------------------------------------------------------------------------------------- large stencils


def test_auto_sends_a_large_stencil_to_the_cell_engine(monkeypatch):
    from gpuseg.engines.grid import stencil

    image = shapes_image(24, 30, seed=3)[0]
    monkeypatch.setattr(stencil, "LARGE_STENCIL", 50)
    monkeypatch.setattr(gpuseg.engines.grid, "LARGE_STENCIL", 50)
    result = gpuseg.segment(image, eps=0.3, min_samples=9, color="rgb", xy_scale=0.05, device="cpu")
    assert result.report["engine"] == "cells"
    X = gpuseg.pixel_features(image, color="rgb", xy_scale=0.05)
    np.testing.assert_array_equal(result.labels.ravel(), oracle_dbscan(X, 0.3, 9))


def test_a_stencil_too_large_for_any_exact_engine_is_refused(monkeypatch):
    monkeypatch.setattr(gpuseg.engines.grid, "LARGE_STENCIL", 50)
    monkeypatch.setattr(gpuseg.engines.grid, "MAX_GRID_PAIRS", 1000)
    image = np.zeros((30, 40, 4), np.uint8)
    with pytest.raises(ValueError, match="anywhere in the image be neighbours.*smaller eps"):
        gpuseg.segment(image, eps=1e9, alpha="feature", device="cpu")


# ----------------------------------------------------------------------------------------------- devices


class DeviceArray:
    """Stands for an array in GPU memory: NumPy code cannot use it; ``get()`` copies it to the host."""

    def __init__(self, array):
        self._array = array
        self.shape, self.dtype = array.shape, array.dtype

    def get(self):
        return self._array.copy()


def device_features(image, **options):
    from gpuseg.features import build_features

    host = build_features(image, **options)
    return host, host.map_arrays(DeviceArray)


@pytest.mark.parametrize("engine", ["auto", "sklearn"])
def test_features_on_a_gpu_come_back_for_cpu_engines(engine):
    from gpuseg.engines.run import cluster_features

    host, on_gpu = device_features(shapes_image(16, 20, seed=4)[0], color="rgb", xy_scale=0.01)
    run = cluster_features(on_gpu, eps=0.0523, min_samples=5, device="cpu", engine=engine)
    np.testing.assert_array_equal(run.labels, oracle_dbscan(host.matrix(), 0.0523, 5))


def test_gpu_without_an_engine_for_the_input_is_an_error(monkeypatch):
    from gpuseg._core.device import Device
    from gpuseg.engines import run as cluster

    monkeypatch.setattr(cluster, "resolve_device", lambda d: Device("gpu", "fake"))
    import gpuseg.engines.cuml

    monkeypatch.setattr(gpuseg.engines.cuml, "missing", lambda: "cuML is not installed")
    X = np.random.default_rng(0).normal(size=(50, 7))
    with pytest.raises(DeviceError, match="device='gpu'.*7 features.*cuML"):
        gpuseg.dbscan(X, eps=0.5, min_samples=3, device="gpu")


def test_rows_that_fit_counts_free_memory_and_halos():
    from types import SimpleNamespace

    from gpuseg.engines.grid.cuda import BYTES_PER_PIXEL, rows_that_fit

    free, pool = 1_000_000, 250_000
    fake = SimpleNamespace(
        cuda=SimpleNamespace(Device=lambda: SimpleNamespace(mem_info=(free, 10 * free))),
        get_default_memory_pool=lambda: SimpleNamespace(free_bytes=lambda: pool),
    )
    per_row = 100 * (BYTES_PER_PIXEL + 3)
    assert rows_that_fit(500, 100, 3, 7, fake) == int(0.8 * (free + pool) // per_row) - 14
    assert rows_that_fit(500, 100, 3, 7, np) == 500


# ------------------------------------------------------------------------------------------------- defaults


def test_defaults_put_no_pixel_offset_on_eps():
    """A flat image: every interior pixel has the same number of neighbours, wherever it is (with eps on a
    whole-pixel offset, float rounding of x * xy_scale made that depend on the position)."""
    image = np.full((40, 40, 3), 128, np.uint8)
    X = gpuseg.pixel_features(image, color="lab", xy_scale=PARAMS["xy_scale"].default)
    counts = (sqdist_matrix(X) <= PARAMS["eps"].default ** 2).sum(axis=1).reshape(40, 40)[8:-8, 8:-8]
    assert np.unique(counts).size == 1
    offsets = np.hypot(*np.mgrid[-10:11, -10:11]).ravel() * PARAMS["xy_scale"].default
    assert np.abs(offsets - PARAMS["eps"].default).min() > 1e-3 * PARAMS["eps"].default


# ------------------------------------------------------------------------------------------- the CLI's words


def test_cli_errors_speak_in_options(scene, monkeypatch):
    monkeypatch.setenv("GPUSEG_DISABLE_GPU", "1")
    from gpuseg._core.device import gpu_status

    gpu_status.cache_clear()
    try:
        result = runner.invoke(app, ["segment", str(scene), "--device", "gpu"])
    finally:
        gpu_status.cache_clear()
    assert result.exit_code == 1
    assert "--device gpu was asked for" in result.output and "use --device cpu" in result.output
    assert "device='" not in result.output


@pytest.mark.parametrize(
    ("command", "flags"),
    [(["segment"], ("--json", "--overwrite", "--explain")), (["bench"], ("--quick",)), ([], ("--version",))],
)
def test_help_shows_flags_without_a_type(command, flags):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
    for flag in flags:
        line = next(line for line in result.output.splitlines() if flag in line)
        assert "<bool>" not in line, line


def test_one_cluster_is_singular(tmp_path):
    path = tmp_path / "flat.png"
    save_png(path, np.full((10, 10, 3), 50, np.uint8))
    result = runner.invoke(app, ["segment", str(path), "--min-samples", "3"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "1 cluster," in result.output and "1 clusters" not in result.output


def test_first_run_says_once_that_it_compiles(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    outputs = ["--out-dir", str(tmp_path / "o"), "--overwrite"]
    first = runner.invoke(app, ["segment", str(scene), *outputs])
    again = runner.invoke(app, ["segment", str(scene), *outputs])
    assert first.exit_code == again.exit_code == 0
    assert "first run: compiling" in first.output and "first run" not in again.output


def test_explain_with_an_engine_that_cannot_run_its_other_half(scene, tmp_path):
    out = tmp_path / "o"
    result = runner.invoke(app, ["segment", str(scene), "--engine", "grid", "--explain", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "scene.explain.jpg").exists()


@pytest.mark.parametrize(("value", "accepted"), [("16G", True), ("512M", True), ("8e9", True), ("lots", False)])
def test_max_memory_takes_sizes(scene, tmp_path, value, accepted):
    result = runner.invoke(app, ["segment", str(scene), "--max-memory", value, "--out-dir", str(tmp_path / "o")])
    assert result.exit_code == (0 if accepted else 2), result.output


def test_an_interrupt_after_an_image_says_its_outputs_were_kept(tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    save_png(first, shapes_image(20, 24)[0])
    save_png(second, shapes_image(20, 24)[0])
    out = tmp_path / "out"
    args = ["segment", str(first), str(second), "--out-dir", str(out)]
    code, stderr, _ = run_and_signal(slow_writer(from_image=2), args, "writing", signal.SIGINT)
    assert code == 130, stderr
    assert "the outputs of 1 finished image(s) were kept" in stderr
    names = sorted(f"a{s}" for s in (".json", ".labels.npy", ".labels.png", ".overlay.jpg"))
    assert files_in(out) == sorted([*names, "manifest.jsonl"])


def test_ctrl_c_while_the_command_line_loads_is_a_clean_exit():
    script = textwrap.dedent(
        """
        import builtins
        real_import = builtins.__import__

        def interrupted_import(name, *args, **kwargs):
            if name == "typer":  # as if Ctrl-C came while the command line's libraries load
                raise KeyboardInterrupt
            return real_import(name, *args, **kwargs)

        builtins.__import__ = interrupted_import
        from gpuseg.__main__ import main
        main()
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in proc.stderr and "interrupted" in proc.stderr
