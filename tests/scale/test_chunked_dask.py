"""gpuseg on a Dask cluster of 2 worker processes: chunked labels identical to in-memory labels, a folder gives
the outputs it gives without Dask, and a worker killed mid-run loses nothing."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # Dask clusters of worker processes

distributed = pytest.importorskip("distributed")
pytest.importorskip("zarr")

from gpuseg import (  # noqa: E402
    SegmentOptions,
    expand_inputs,
    segment,  # noqa: E402
    segment_many,
)
from gpuseg.data import shapes_image  # noqa: E402
from gpuseg.scale.chunked import read_labels, segment_chunked  # noqa: E402

OPTIONS = SegmentOptions(eps=0.055, min_samples=20, color="lab", alpha="ignore", xy_scale=0.01, device="cpu")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env={"NUMBA_NUM_THREADS": "1"}
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def write_folder(folder, n: int, size=(150, 200)):
    import cv2

    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"scene{i}.png"), shapes_image(*size, seed=i)[0][:, :, ::-1])


@pytest.mark.parametrize(
    ("xy_scale", "chunk", "color"), [(0.01, 48, "lab"), (0.02, 64, "rgb"), (0, 50, "rgb"), (0, 100, "lab")]
)
@pytest.mark.parametrize("scene", ["shapes", "blocks"])
def test_chunked_labels_on_two_workers_equal_in_memory_labels(tmp_path, client, xy_scale, chunk, color, scene):
    if scene == "shapes":  # large regions: clusters cross many seams
        image, _ = shapes_image(200, 300, seed=7)
    else:  # small noisy blocks: many clusters, borders and noise at the seams
        rng = np.random.default_rng(5)
        blocks = rng.integers(0, 256, (200 // 7 + 1, 300 // 7 + 1, 3))
        image = np.repeat(np.repeat(blocks, 7, 0), 7, 1)[:200, :300]
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    options = dict(eps=0.055, min_samples=20 if scene == "shapes" else 8, color=color, xy_scale=xy_scale)
    expected = segment(image, device="cpu", **options).labels
    tiff = tmp_path / "scene.tif"
    import tifffile

    tifffile.imwrite(tiff, image, tile=(32, 32))
    for source in (image, tiff):  # an array is sent to the workers once; a file is read by them
        stem = tmp_path / f"out-{type(source).__name__}"
        report = segment_chunked(source, stem, chunk=chunk, client=client, **options)
        assert np.array_equal(read_labels(f"{stem}.labels.zarr"), expected)
        assert report["workers"] == 2


def test_a_folder_on_the_cluster_gives_the_same_outputs_as_without(tmp_path, client):
    write_folder(tmp_path / "in", 4)
    on_cluster = expand_inputs([tmp_path / "in"], tmp_path / "dask")
    summary = segment_many(on_cluster, OPTIONS, client=client, out_dir=tmp_path / "dask")
    assert summary.done == 4 and summary.failed == 0
    local = expand_inputs([tmp_path / "in"], tmp_path / "local")
    segment_many(local, OPTIONS, out_dir=tmp_path / "local")
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == names
    for name in names:
        a, b = tmp_path / "dask" / name, tmp_path / "local" / name
        if name.endswith(".npy"):
            assert np.array_equal(np.load(a), np.load(b))
        elif name.endswith(".json") and name != "manifest.jsonl":
            ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
            for key in ("timings_s", "cluster_stages_s", "outputs", "source"):
                ra.pop(key), rb.pop(key)
            assert ra == rb
        elif name.endswith(".png"):
            assert a.read_bytes() == b.read_bytes()
    lines = [json.loads(line) for line in (tmp_path / "dask" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(line["source"] for line in lines) == sorted(str(i.source) for i in on_cluster.items)


def kill_a_busy_worker(client, killed: list, after: float = 0.2) -> threading.Thread:
    """A thread that SIGKILLs the process of the first worker seen running a task, ``after`` seconds into it."""

    def kill():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                pid = next(iter(client.run(os.getpid, workers=busy[:1]).values()))
                time.sleep(after)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, client):
    write_folder(tmp_path / "in", 8, size=(300, 400))
    found = expand_inputs([tmp_path / "in"], tmp_path / "out")
    manifest = tmp_path / "out" / "manifest.jsonl"
    killed: list = []
    killer = kill_a_busy_worker(client, killed)
    summary = segment_many(found, OPTIONS, client=client, out_dir=tmp_path / "out")
    killer.join()
    assert killed, "no worker was killed"
    assert summary.done == 8 and summary.failed == 0
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(line["source"] for line in lines) == sorted(str(i.source) for i in found.items)
    assert all(line["status"] == "done" for line in lines)
    for item in found.items:  # every set whole, its labels right
        for suffix in (".labels.npy", ".labels.png", ".overlay.jpg", ".json"):
            assert item.stem.with_name(item.stem.name + suffix).is_file()
    leftovers = [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    first = found.items[0]
    expected = segment(first.source, device="cpu", eps=0.055, min_samples=20, color="lab", xy_scale=0.01).labels
    assert np.array_equal(np.load(first.stem.with_name(first.stem.name + ".labels.npy")), expected)


def test_a_worker_killed_mid_chunked_run_changes_no_label(tmp_path, client):
    image, _ = shapes_image(360, 480, seed=11)
    options = dict(eps=0.055, min_samples=20, color="rgb", xy_scale=0.01)
    expected = segment(image, device="cpu", **options).labels
    killed: list = []
    killer = kill_a_busy_worker(client, killed, after=0.05)
    segment_chunked(image, tmp_path / "scene", chunk=40, client=client, **options)
    killer.join()
    assert killed, "no worker was killed"
    assert np.array_equal(read_labels(tmp_path / "scene.labels.zarr"), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.json", "scene.labels.zarr", "scene.overview.jpg"]


def test_command_line_folder_on_a_local_cluster(tmp_path):
    from typer.testing import CliRunner

    from gpuseg.cli.app import app

    write_folder(tmp_path / "in", 3, size=(80, 100))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(tmp_path / "in"), "--out-dir", str(out), "--scheduler", "local:2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and {line["status"] for line in lines} == {"done"}


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    from typer.testing import CliRunner

    import gpuseg.scale.dask_cluster
    from gpuseg.cli.app import app

    monkeypatch.setattr(gpuseg.scale.dask_cluster, "CONNECT_TIMEOUT_S", 1.0)
    result = CliRunner().invoke(app, ["segment", __file__, "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "could not reach the Dask scheduler at tcp://127.0.0.1:9" in result.output


def test_relative_paths_reach_workers_started_in_another_folder(tmp_path, client, monkeypatch):
    write_folder(tmp_path / "in", 2, size=(60, 80))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = client.run(os.getcwd)
    client.run(os.chdir, str(elsewhere))  # as `dask worker` started in another folder
    try:
        monkeypatch.chdir(tmp_path)
        summary = segment_many(expand_inputs(["in"], "out"), OPTIONS, client=client, out_dir="out")
        assert (summary.done, summary.failed) == (2, 0)
        options = dict(eps=0.055, min_samples=20, xy_scale=0.01)
        segment_chunked("in/scene1.png", "out/chunked", chunk=32, client=client, **options)
        expected = segment(shapes_image(60, 80, seed=1)[0], device="cpu", **options).labels
        assert np.array_equal(read_labels(tmp_path / "out" / "chunked.labels.zarr"), expected)
    finally:
        for worker, cwd in before.items():
            client.run(os.chdir, cwd, workers=[worker])
    assert list(elsewhere.iterdir()) == []
    assert (tmp_path / "out" / "scene0.labels.npy").is_file() and (tmp_path / "out" / "scene1.json").is_file()
