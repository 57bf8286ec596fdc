"""One image in chunks (gpuseg.scale.chunked): labels identical to the in-memory run's, whatever the chunking, and
outputs written all together or not at all. These run the chunk tasks in this process; tests/scale/test_chunked_dask.py
runs them on a 2-worker Dask cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("tifffile")

from gpuseg import segment  # noqa: E402
from gpuseg.data import shapes_image  # noqa: E402
from gpuseg.errors import ImageError, OutputExistsError  # noqa: E402
from gpuseg.io.lazy import open_lazy  # noqa: E402
from gpuseg.scale.chunked import (  # noqa: E402
    ChunkSpec,
    SeamTable,
    chunk_spec,
    cluster_chunked,
    number_nodes,
    read_labels,
    seam_pairs,
    segment_chunked,
)


def blocky_image(rng, h: int, w: int, block: int, noise: float) -> np.ndarray:
    """Random flat blocks with noise: many clusters, seams through them, border and noise pixels."""
    blocks = rng.integers(0, 256, (h // block + 1, w // block + 1, 3))
    image = np.repeat(np.repeat(blocks, block, 0), block, 1)[:h, :w]
    return np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)


def chunked_labels(tmp_path, image, chunk, **options) -> np.ndarray:
    spec = chunk_spec(image.shape[:2], chunk=chunk, **options)
    store = tmp_path / f"labels-{chunk}-{len(list(tmp_path.iterdir()))}.zarr"
    cluster_chunked(open_lazy(image), store, spec)
    return read_labels(store)


def in_memory(image, **options) -> np.ndarray:
    return segment(image, device="cpu", **options).labels


@pytest.mark.parametrize("color", ["rgb", "lab"])
@pytest.mark.parametrize("chunk", [32, 64, 77])
def test_chunked_labels_equal_in_memory_labels_with_position(tmp_path, color, chunk):
    image, _ = shapes_image(200, 300, seed=3)
    options = dict(eps=0.055, min_samples=20, color=color, alpha="ignore", xy_scale=0.01)
    expected = in_memory(image, **options)
    got = chunked_labels(tmp_path, image, chunk, **options)
    assert np.array_equal(got, expected)
    # the shapes' clusters cross many seams: the merge is exercised, not avoided
    big = np.bincount(expected[expected >= 0]).argmax()
    rows, cols = np.nonzero(expected == big)
    assert (rows.max() // chunk - rows.min() // chunk + 1) * (cols.max() // chunk - cols.min() // chunk + 1) >= 4


@pytest.mark.parametrize("color", ["rgb", "lab", "gray"])
@pytest.mark.parametrize("chunk", [40, 64, 300])
def test_chunked_labels_equal_in_memory_labels_colour_only(tmp_path, rng, color, chunk):
    image = blocky_image(rng, 150, 220, 9, 6.0)
    options = dict(eps=0.05, min_samples=15, color=color, alpha="ignore", xy_scale=0)
    assert np.array_equal(chunked_labels(tmp_path, image, chunk, **options), in_memory(image, **options))


@pytest.mark.parametrize("trial", range(6))
def test_random_images_halos_and_chunks_give_identical_labels(tmp_path, rng, trial):
    h, w = (int(v) for v in rng.integers(50, 140, 2))
    image = blocky_image(rng, h, w, int(rng.integers(2, 12)), float(rng.uniform(2, 12)))
    alpha = "ignore"
    if trial % 3 == 2:  # transparent pixels are not samples
        image = np.dstack([image, (rng.random((h, w)) > 0.2) * 255]).astype(np.uint8)
        alpha = "mask"
    xy_scale = float(rng.choice([0.005, 0.01, 0.02]))
    eps = float(rng.uniform(0.03, 0.08))
    radius = int(eps / xy_scale)
    chunk = int(rng.integers(max(2 * radius, 8), 60))
    options = dict(
        eps=eps, min_samples=int(rng.integers(3, 30)), color=str(rng.choice(["rgb", "lab", "gray"])), alpha=alpha,
        xy_scale=xy_scale if trial % 2 == 0 else 0,
    )  # fmt: skip
    expected = in_memory(image, **options)
    assert np.array_equal(chunked_labels(tmp_path, image, chunk, **options), expected)


def test_float_and_16_bit_images_and_grey_planes(tmp_path, rng):
    base = blocky_image(rng, 90, 120, 7, 5.0)
    for image in (base.astype(np.float32) / 255, (base.astype(np.uint16) * 257), base[:, :, 0]):
        for xy_scale in (0.01, 0):
            options = dict(eps=0.05, min_samples=10, color="rgb", alpha="ignore", xy_scale=xy_scale)
            assert np.array_equal(chunked_labels(tmp_path, image, 30, **options), in_memory(image, **options))


def test_seam_pairs_and_numbering_steps_by_hand():
    # chunk 0 has components 0 and 1, chunk 1 one component; pixel 7 is seen by both chunks
    a = SeamTable(index=np.array([5, 7]), component=np.array([1, 0]), first_core=np.array([3, 9]))
    b = SeamTable(index=np.array([7, 12]), component=np.array([0, 0]), first_core=np.array([1]))
    pairs = seam_pairs(a, b)
    assert pairs.tolist() == [[0, 0]]
    numbers = number_nodes([a.first_core, b.first_core], {(0, 1): pairs})
    # chunk 0's component 0 and chunk 1's component 0 are one cluster (smallest core 1): number 0; the other 1
    assert [n.tolist() for n in numbers] == [[0, 1], [0]]


def test_chunk_smaller_than_its_halo_is_refused():
    with pytest.raises(ValueError, match="smaller than the halo needs"):
        chunk_spec((500, 500), eps=0.1, min_samples=5, color="rgb", alpha="ignore", xy_scale=0.01, chunk=8)
    with pytest.raises(ValueError, match="chunk=0"):
        chunk_spec((500, 500), eps=0.1, min_samples=5, color="rgb", alpha="ignore", xy_scale=0.01, chunk=0)
    spec = chunk_spec((500, 500), eps=0.1, min_samples=5, color="rgb", alpha="ignore", xy_scale=0, chunk=8)
    assert isinstance(spec, ChunkSpec) and spec.halo == 0


def test_tiled_tiff_zarr_and_ome_zarr_are_read_lazily_with_the_same_labels(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    zarr = pytest.importorskip("zarr")
    image, _ = shapes_image(160, 200, seed=5)
    options = dict(eps=0.055, min_samples=20, color="lab", alpha="ignore", xy_scale=0.01)
    expected = in_memory(image, **options)
    tiff = tmp_path / "tiled.tif"
    tifffile.imwrite(tiff, image, tile=(32, 32))
    plain = tmp_path / "plain.zarr"
    zarr.create_array(plain, shape=image.shape, chunks=(40, 40, 3), dtype="uint8")[...] = image
    ome = tmp_path / "ome.zarr"
    group = zarr.open_group(ome, mode="w")
    group.attrs["multiscales"] = [
        {"axes": [{"name": "c"}, {"name": "y"}, {"name": "x"}], "datasets": [{"path": "0"}, {"path": "1"}]}
    ]
    group.create_array("0", shape=(3, 160, 200), chunks=(3, 50, 50), dtype="uint8")[...] = image.transpose(2, 0, 1)
    group.create_array("1", shape=(3, 80, 100), chunks=(3, 50, 50), dtype="uint8")
    for path in (tiff, plain, ome):
        source = open_lazy(path)
        assert source.kind in ("tiff", "zarr") and source.image_shape == (160, 200, 3)
        assert np.array_equal(source.read(10, 20, 30, 45), image[10:20, 30:45])
        report = segment_chunked(path, tmp_path / f"out-{path.stem}", chunk=48, **options)
        assert np.array_equal(read_labels(tmp_path / f"out-{path.stem}.labels.zarr"), expected)
        assert report["n_clusters"] == expected.max() + 1


def test_a_zarr_that_is_not_an_image_is_refused(tmp_path):
    zarr = pytest.importorskip("zarr")
    bad = tmp_path / "cube.zarr"
    zarr.create_array(bad, shape=(4, 5, 6, 7), dtype="uint8")
    with pytest.raises(ImageError, match="not an image"):
        open_lazy(bad)
    wide = tmp_path / "wide.zarr"
    zarr.create_array(wide, shape=(10, 10, 9), dtype="uint8")
    with pytest.raises(ImageError, match="not an image"):
        open_lazy(wide)


def test_outputs_and_report_of_a_chunked_run(tmp_path):
    image, _ = shapes_image(120, 150, seed=2)
    stem = tmp_path / "scene"
    options = dict(eps=0.055, min_samples=20, color="rgb", xy_scale=0.01)
    report = segment_chunked(image, stem, chunk=40, **options)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["scene.json", "scene.labels.zarr", "scene.overview.jpg"]
    saved = json.loads((tmp_path / "scene.json").read_text())
    assert saved["chunking"] == {"chunk": 40, "halo": 10, "chunks": 12, "grid": [3, 4]}
    assert saved["workers"] == 0 and saved["n_clusters"] == report["n_clusters"]
    expected = in_memory(image, **options)
    assert saved["cluster_sizes"] == np.bincount(expected[expected >= 0]).tolist()
    assert {"count", "union", "borders", "merge"} <= set(saved["cluster_stages_s"])
    with pytest.raises(OutputExistsError):
        segment_chunked(image, stem, chunk=40, **options)
    segment_chunked(image, stem, chunk=60, overwrite=True, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert json.loads((tmp_path / "scene.json").read_text())["chunking"]["chunk"] == 60


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failing_or_interrupted_chunk_leaves_no_output_behind(tmp_path, monkeypatch, error):
    import gpuseg.scale.chunked.driver as chunked

    def fail(*args):
        raise error

    monkeypatch.setattr(chunked, "label_chunk", fail)
    image, _ = shapes_image(100, 100, seed=2)
    with pytest.raises(type(error)):
        segment_chunked(image, tmp_path / "scene", chunk=40, eps=0.055, min_samples=20, xy_scale=0.01)
    assert list(tmp_path.iterdir()) == []


def test_command_line_chunked_runs_and_clear_errors(tmp_path):
    import tifffile
    import zarr
    from typer.testing import CliRunner

    from gpuseg.cli.app import app

    runner = CliRunner()
    image, _ = shapes_image(120, 160, seed=4)
    tifffile.imwrite(tmp_path / "a.tif", image, tile=(32, 32))
    zarr.create_array(tmp_path / "b.zarr", shape=image.shape, chunks=(40, 40, 3), dtype="uint8")[...] = image
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.tif"), str(tmp_path / "b.zarr"), "--out-dir", str(out), "--color", "rgb"]
    result = runner.invoke(app, [*args, "--chunk", "40", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert (summary["images"], summary["done"]) == (2, 2)
    expected = segment(image, device="cpu", color="rgb").labels
    for stem in ("a", "b"):
        assert np.array_equal(read_labels(out / f"{stem}.labels.zarr"), expected)
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["status"] for line in lines) == ["done", "done"]
    again = runner.invoke(app, [*args, "--chunk", "40"])
    assert again.exit_code == 1 and "already have outputs" in again.output
    small = runner.invoke(app, [*args, "--chunk", "4", "--overwrite"])
    assert small.exit_code == 1 and "smaller than the halo needs" in small.output and "Traceback" not in small.output
    explain = runner.invoke(app, [*args, "--chunk", "40", "--overwrite", "--explain"])
    assert explain.exit_code == 2 and "--explain and truth need the whole image" in explain.output
    for extra in (["--noise", "fill"], ["--min-region", "20"], ["--eps", "auto"]):
        refused = runner.invoke(app, [*args, "--chunk", "40", "--overwrite", *extra], env={"COLUMNS": "200"})
        assert refused.exit_code == 2 and f"{' '.join(extra)} needs the whole image" in refused.output
    report = json.loads((out / "a.json").read_text())
    assert report["eps_search"] is None and report["postprocess"] is None and report["warnings"] == []
    bad = runner.invoke(app, ["segment", str(tmp_path / "a.tif"), "--scheduler", "everywhere"])
    assert bad.exit_code == 2 and "local, local:N, local-cuda or tcp://HOST:PORT" in bad.output
    zarr.create_array(tmp_path / "cube.zarr", shape=(2, 3, 4, 5), dtype="uint8")
    cube = runner.invoke(app, ["segment", str(tmp_path / "cube.zarr"), "--out-dir", str(tmp_path / "o2")])
    assert cube.exit_code == 1 and "not an image" in cube.output and "Traceback" not in cube.output


def test_tiff_layouts_are_read_as_rgb_windows(tmp_path, rng):
    import tifffile

    planes = rng.integers(0, 256, (3, 70, 90), dtype=np.uint8)
    rgb = planes.transpose(1, 2, 0)
    tifffile.imwrite(tmp_path / "planes.ome.tif", planes, tile=(32, 32), metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "separate.tif", planes, photometric="rgb", planarconfig="separate", tile=(32, 32))
    tifffile.imwrite(tmp_path / "grey.tif", planes[0], tile=(32, 32))
    for name in ("planes.ome.tif", "separate.tif"):
        source = open_lazy(tmp_path / name)
        assert source.image_shape == (70, 90, 3) and np.array_equal(source.read(5, 40, 7, 60), rgb[5:40, 7:60])
    grey = open_lazy(tmp_path / "grey.tif")
    assert grey.shape == (70, 90) and np.array_equal(grey.read(0, 70, 0, 90), planes[0])
