"""Folders of images: inputs, mirrored outputs, the manifest, resuming, picture formats and interrupts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import gpuseg
from gpuseg import expand_inputs
from gpuseg.cli.app import app
from gpuseg.data import shapes_image
from gpuseg.io.write import save_png

runner = CliRunner()
FAST = ["--device", "cpu", "--color", "rgb"]


def make_folder(root: Path) -> dict[str, Path]:
    """photos/{a.png, b.jpg, notes.txt, sub/a.png, sub/deeper/c.png}: two images named a, one non-image."""
    files = {
        "a": root / "photos" / "a.png",
        "b": root / "photos" / "b.jpg",
        "sub/a": root / "photos" / "sub" / "a.png",
        "sub/deeper/c": root / "photos" / "sub" / "deeper" / "c.png",
    }
    for seed, path in enumerate(files.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        image = shapes_image(24 + seed, 30, seed=seed)[0][:, :, :3]
        if path.suffix == ".jpg":
            cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        else:
            save_png(path, image)
    (root / "photos" / "notes.txt").write_text("not an image")
    return files


def manifest_lines(out: Path, run: int = -1) -> list[dict]:
    """The manifest's lines of one run (runs append, each line names its run): the last by default."""
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    runs = list(dict.fromkeys(line["run"] for line in lines))
    return [line for line in lines if line["run"] == runs[run]]


def every_file(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------ inputs


def test_a_folder_without_recursive_takes_its_own_images_only(tmp_path):
    files = make_folder(tmp_path)
    found = expand_inputs([tmp_path / "photos"], tmp_path / "out")
    assert [i.source for i in found.items] == [files["a"], files["b"]]
    assert [i.stem for i in found.items] == [tmp_path / "out" / "a", tmp_path / "out" / "b"]
    assert found.not_images == 1


def test_recursive_mirrors_subfolders_so_equal_names_never_collide(tmp_path):
    files = make_folder(tmp_path)
    found = expand_inputs([tmp_path / "photos"], tmp_path / "out", recursive=True)
    assert [i.source for i in found.items] == sorted(files.values())
    stems = {i.source: i.stem for i in found.items}
    assert stems[files["sub/a"]] == tmp_path / "out" / "sub" / "a"
    assert stems[files["sub/deeper/c"]] == tmp_path / "out" / "sub" / "deeper" / "c"


def test_patterns_keep_the_folders_after_their_fixed_part(tmp_path):
    files = make_folder(tmp_path)
    found = expand_inputs([str(tmp_path / "photos" / "**" / "*.png")], tmp_path / "out", recursive=True)
    assert sorted(i.source for i in found.items) == sorted([files["a"], files["sub/a"], files["sub/deeper/c"]])
    assert {i.stem for i in found.items} >= {tmp_path / "out" / "sub" / "a"}


def test_files_named_directly_are_tried_whatever_their_suffix(tmp_path):
    files = make_folder(tmp_path)
    found = expand_inputs([tmp_path / "photos" / "notes.txt", files["b"]], None)
    assert [i.stem for i in found.items] == [tmp_path / "photos" / "notes", tmp_path / "photos" / "b"]


def test_a_pattern_matching_nothing_is_a_usage_error_and_a_missing_file_a_failure(tmp_path):
    result = runner.invoke(app, ["segment", str(tmp_path / "nothing-*.png")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "matches no file" in result.output
    result = runner.invoke(app, ["segment", str(tmp_path / "nope.png")], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "no such file" in result.output


def test_outputs_and_the_out_dir_are_never_taken_as_inputs(tmp_path):
    make_folder(tmp_path)
    beside = ["segment", str(tmp_path / "photos"), "--recursive", "--json", *FAST]
    assert runner.invoke(app, beside).exit_code == 0
    rerun = runner.invoke(app, [*beside, "--skip-existing"])
    summary = json.loads(rerun.stdout)["summary"]
    assert (summary["done"], summary["skipped"]) == (0, 4)
    assert not list((tmp_path / "photos").rglob("*.labels.labels.*"))
    inside = tmp_path / "photos" / "out"
    args = ["segment", str(tmp_path / "photos"), "--recursive", "--out-dir", str(inside), "--json", *FAST]
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    again = json.loads(runner.invoke(app, [*args, "--skip-existing"]).stdout)["summary"]
    assert (again["done"], again["skipped"]) == (0, 4)
    assert not (inside / "out").exists()


def test_hidden_and_special_files_in_folders_are_passed_over_and_counted(tmp_path):
    make_folder(tmp_path)
    save_png(tmp_path / "photos" / ".hidden.png", shapes_image(8, 8)[0])
    os.mkfifo(tmp_path / "photos" / "pipe.png")
    found = expand_inputs([tmp_path / "photos"], None)
    assert [i.source.name for i in found.items] == ["a.png", "b.jpg"]
    assert found.not_images == 3  # notes.txt, .hidden.png, pipe.png


def test_overlapping_inputs_are_refused(tmp_path):
    make_folder(tmp_path)
    photos = tmp_path / "photos"
    result = runner.invoke(
        app, ["segment", str(photos), str(photos / "sub"), "--recursive", "--out-dir", str(tmp_path / "o")],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 2 and "given twice" in result.output
    assert not (tmp_path / "o").exists()


def test_an_out_dir_that_is_a_file_is_a_usage_error(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["segment", str(tmp_path / "photos"), "--out-dir", str(tmp_path / "file")],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 2 and "is a file: give a folder" in result.output


def test_a_folder_without_images_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    result = runner.invoke(app, ["segment", str(tmp_path / "empty")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "no images in" in result.output and "1 other file" in result.output


# --------------------------------------------------------------------------------------------- the run


def test_a_folder_run_writes_mirrored_outputs_a_manifest_and_a_summary(tmp_path):
    files = make_folder(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(tmp_path / "photos"), "--recursive", "--out-dir", str(out), "--json",
                                 "--min-samples", "5", *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    summary = document["summary"]
    assert (summary["images"], summary["done"], summary["failed"], summary["not_images"]) == (4, 4, 0, 1)
    assert summary["images_per_s"] > 0 and summary["stage_s"]["cluster"] > 0
    lines = manifest_lines(out)
    assert sorted(line["source"] for line in lines) == sorted(str(p) for p in files.values())  # as they finish
    assert all(line["status"] == "done" and line["error"] is None for line in lines)
    for line in lines:
        assert all(Path(p).is_file() for p in line["outputs"])
    assert (out / "sub" / "deeper" / "c.overlay.jpg").is_file()
    # each image's labels are gpuseg.segment's on that image
    for key, path in files.items():
        expected = gpuseg.segment(path, min_samples=5, device="cpu", color="rgb").labels
        np.testing.assert_array_equal(np.load(out / f"{key}.labels.npy"), expected)


def test_a_failing_image_is_in_the_manifest_and_the_others_finish(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(tmp_path / "photos"), "--out-dir", str(out), *FAST],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 1
    lines = {Path(line["source"]).name: line for line in manifest_lines(out)}
    assert lines["broken.png"]["status"] == "failed" and "broken.png" in lines["broken.png"]["error"]
    assert lines["a.png"]["status"] == lines["b.jpg"]["status"] == "done"
    assert "summary" in result.stdout and "1 failed" in result.stdout


def test_skip_existing_reruns_nothing_and_redoes_incomplete_sets(tmp_path, monkeypatch):
    make_folder(tmp_path)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "photos"), "--recursive", "--out-dir", str(out), "--json", *FAST]
    assert runner.invoke(app, args).exit_code == 0
    (out / "sub" / "a.json").unlink()  # an incomplete set: redone
    clustered = []
    real = gpuseg.segmentation.pipeline.segment

    def counted(image, *args, **kwargs):
        clustered.append(image.shape)
        return real(image, *args, **kwargs)

    monkeypatch.setattr(gpuseg.segmentation.pipeline, "segment", counted)
    result = runner.invoke(app, [*args, "--skip-existing"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert (summary["skipped"], summary["done"]) == (3, 1) and len(clustered) == 1
    assert (out / "sub" / "a.json").is_file()
    statuses = sorted(line["status"] for line in manifest_lines(out))
    assert statuses == ["done", "skipped", "skipped", "skipped"]  # this run's lines; the first run's are kept
    again = runner.invoke(app, [*args, "--skip-existing"])
    assert json.loads(again.stdout)["summary"]["skipped"] == 4 and len(clustered) == 1


def test_a_rerun_without_overwrite_or_skip_existing_is_refused_before_any_work(tmp_path):
    make_folder(tmp_path)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "photos"), "--out-dir", str(out), *FAST]
    assert runner.invoke(app, args).exit_code == 0
    before = {name: (out / name).read_bytes() for name in ("a.json", "manifest.jsonl")}
    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 1
    assert "2 of 2 image(s) already have outputs" in again.output and "--skip-existing" in again.output
    assert {name: (out / name).read_bytes() for name in before} == before  # the manifest too
    replaced = runner.invoke(app, [*args, "--overwrite"])
    assert replaced.exit_code == 0
    assert [line["status"] for line in manifest_lines(out)] == ["done", "done"]
    assert len(manifest_lines(out, run=0)) == 2  # the first run's lines are kept


@pytest.mark.parametrize(("fmt", "magic"), [("jpg", b"\xff\xd8"), ("png", b"\x89PNG"), ("webp", b"RIFF")])
def test_picture_formats(tmp_path, fmt, magic):
    files = make_folder(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(files["a"]), "--out-dir", str(out), "--picture-format", fmt,
                                 "--save", "overlay,mean", "--explain", *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("overlay", "mean", "explain"):
        data = (out / f"a.{name}.{fmt}").read_bytes()
        assert data.startswith(magic)
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    assert every_file(out) == sorted(
        [
            "a.json",
            "a.labels.npy",
            "a.labels.png",
            f"a.overlay.{fmt}",
            f"a.mean.{fmt}",
            f"a.explain.{fmt}",
        ]
    )


# ------------------------------------------------------------------------------------------ interrupts

INTERRUPTIBLE = """
import sys
import gpuseg.segmentation.pipeline as pipeline

real = pipeline.segment
count = 0

def announced(image, *args, **kwargs):
    global count
    count += 1
    if count == 3:
        print("third", flush=True)
        import time
        time.sleep(30)
    return real(image, *args, **kwargs)

pipeline.segment = announced
from gpuseg.__main__ import main
sys.argv = ["gpuseg", *sys.argv[1:]]
main()
"""


@pytest.mark.slow  # a signal sent to a subprocess mid-run
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_folder_leaves_complete_sets_a_consistent_manifest_and_resumes(tmp_path, sig):
    (tmp_path / "in").mkdir()
    for k in range(5):
        save_png(tmp_path / "in" / f"im{k}.png", shapes_image(20, 22, seed=k)[0])
    out = tmp_path / "out"
    args = [sys.executable, "-c", INTERRUPTIBLE, "segment", str(tmp_path / "in"), "--out-dir", str(out), *FAST]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "third"
    time.sleep(0.3)  # the first two images' writers finish
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143)
    names = every_file(out)
    assert not [n for n in names if n.startswith(".")], names  # no hidden temporary file left
    lines = manifest_lines(out)
    done = [Path(line["source"]).stem for line in lines]
    assert all(line["status"] == "done" for line in lines) and len(done) >= 1
    assert f"the outputs of {len(done)} finished image(s) were kept; --skip-existing finishes the rest" in stderr
    for stem in (f"im{k}" for k in range(5)):  # an image's outputs are all there or none is
        present = [n for n in names if n.startswith(stem + ".")]
        assert len(present) == (4 if stem in done else len(present)) and len(present) in (0, 4), present
    rerun = runner.invoke(app, ["segment", str(tmp_path / "in"), "--out-dir", str(out), "--skip-existing", "--json",
                                *FAST])  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)["summary"]
    assert summary["done"] + summary["skipped"] == 5 and summary["done"] >= 1
    assert len(every_file(out)) == 5 * 4 + 1
    statuses = [line["status"] for line in manifest_lines(out)]
    assert statuses.count("skipped") == len(done) and statuses.count("done") == 5 - len(done)


def test_on_a_gpu_images_go_to_the_device_in_the_decoding_threads(tmp_path, monkeypatch):
    # Without a GPU here, the device side is replaced by recorders: the pipeline must decode JPEGs with the
    # GPU decoder where it can, and upload the others, in its decoding threads, before clustering.
    import threading

    from gpuseg.io import gpu_decode
    from gpuseg.io.read import load_image
    from gpuseg.scale import folder as batch

    files = make_folder(tmp_path)
    calls = []

    def on_gpu_decoder(path, max_pixels):
        calls.append(("gpu-decode", Path(path).name, threading.current_thread().name))
        return load_image(path, max_pixels=max_pixels)

    def uploaded(image):
        calls.append(("upload", image.shape, threading.current_thread().name))
        return image

    monkeypatch.setattr(batch, "_runs_on_gpu", lambda device: True)
    monkeypatch.setattr(gpu_decode, "decodes", lambda path: Path(path).suffix == ".jpg")
    monkeypatch.setattr(gpu_decode, "load_image_on_gpu", on_gpu_decoder)
    monkeypatch.setattr(gpu_decode, "upload", uploaded)
    items = expand_inputs([tmp_path / "photos"], tmp_path / "out").items
    options = gpuseg.SegmentOptions(eps=0.055, min_samples=5, color="rgb", alpha="ignore", xy_scale=0.01, device="cpu")
    summary = gpuseg.segment_many(items, options)
    assert summary.done == 2
    assert sorted(c[0] for c in calls) == ["gpu-decode", "upload"]
    assert ("gpu-decode", files["b"].name) == calls[[c[0] for c in calls].index("gpu-decode")][:2]
    assert all(c[2].startswith("gpuseg-decode") for c in calls)


def test_symbolic_link_loops_are_refused_without_a_traceback(tmp_path):
    good = tmp_path / "a.png"
    save_png(good, shapes_image(20, 24, seed=1)[0])
    (tmp_path / "loop.png").symlink_to("loop.png")  # ln -s loop.png loop.png
    result = runner.invoke(app, ["segment", str(tmp_path / "loop.png"), "--out-dir", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 1 and "Too many levels of symbolic links" in result.output, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output
    for name in ("loopdir", "dangling"):
        (tmp_path / name).symlink_to(name if name == "loopdir" else "nowhere")
        result = runner.invoke(app, ["segment", str(good), "--out-dir", str(tmp_path / name), *FAST])
        assert result.exit_code == 2 and "is a symbolic link to nothing (or to itself)" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "dangling", "loop.png", "loopdir"]
