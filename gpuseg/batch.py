"""Many images at the speed of the slowest stage: decode in a pool of threads, cluster one image at a time on
the device, encode and write in a pool of threads, with bounded queues between them; a manifest line per
image as it finishes, and a summary at the end. The command line's ``segment`` is a thin shell over
:func:`segment_many`.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset(
    (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".dib", ".webp", ".pbm", ".pgm", ".ppm")
    + (".pnm", ".pam", ".pfm", ".hdr", ".pic", ".ras", ".sr", ".gif", ".jp2", ".j2k", ".jpf", ".avif")
)
"""File suffixes taken as images when a folder or a pattern is expanded (files named one by one are always
tried)."""
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class Item:
    """One image of a run: its ``source`` file and the ``stem`` of its outputs (``<stem>.labels.npy``, ...)."""

    source: Path
    stem: Path


@dataclass
class Inputs:
    """The images of a run, in a stable sorted order, and how many files were passed over."""

    items: list[Item]
    not_images: int = 0
    """Files passed over: not images by their suffix, hidden, not regular files, or gpuseg's outputs."""
    expanded: bool = False
    """Did a folder or a pattern give images (the run is then a batch, with a manifest)?"""


OUTPUT_NAMES = (".labels", ".overlay", ".mean", ".boundaries", ".noise", ".explain", ".kdist")
"""gpuseg writes ``<stem><name>.<ext>``: files named so are outputs, never inputs of a folder or a pattern."""


def expand_inputs(inputs: Iterable[str | os.PathLike[str]], out_dir: Path | None, recursive: bool = False) -> Inputs:
    """Files, folders (their subfolders with ``recursive``) and glob patterns, as images with output stems.

    With ``out_dir``, a file found in a folder or by a pattern keeps its path relative to that folder (the
    pattern's folder part) under ``out_dir``, so that images of the same name in different subfolders never
    collide; a file named directly goes to ``out_dir`` itself. Without ``out_dir``, outputs go beside each
    image. Folders and patterns pass over (and count) files whose suffix is not an image's, hidden files,
    what is not a regular file, gpuseg's own outputs and everything under ``out_dir``. A pattern with ``**``
    descends into subfolders.

    Raises
    ------
    FileNotFoundError
        A pattern that matches no file. (A file that does not exist is an image that fails when read.)
    """
    items: list[Item] = []
    passed_over = 0
    expanded = False
    skip_root = out_dir.resolve() if out_dir is not None else None
    for given in inputs:
        text = os.fspath(given)
        path = Path(text)
        if path.is_dir():
            found = sorted(path.rglob("*") if recursive else path.iterdir())
            root = path
        elif path.exists() or not glob.has_magic(text):  # a file: one that is missing fails as that image
            items.append(Item(path, (out_dir or path.parent) / path.stem))
            continue
        else:
            found = sorted(Path(p) for p in glob.glob(text, recursive=recursive or "**" in text))
            if not found:
                raise FileNotFoundError(f"{text}: the pattern matches no file")
            root = Path(_literal_prefix(text))
        expanded = True
        for file in found:
            if file.is_dir() and not file.is_symlink():
                continue
            if not _is_input(file, skip_root):
                passed_over += 1
                continue
            stem = (out_dir / file.relative_to(root)).with_suffix("") if out_dir else file.with_suffix("")
            items.append(Item(file, stem))
    return Inputs(items, passed_over, expanded)


def _is_input(file: Path, skip_root: Path | None) -> bool:
    """Is a file found in a folder or by a pattern an image to segment?"""
    if file.suffix.lower() not in IMAGE_SUFFIXES or file.name.startswith("."):
        return False
    if any(file.stem.endswith(name) for name in OUTPUT_NAMES):
        return False
    try:
        if not file.is_file():  # FIFOs, sockets, devices, broken links
            return False
        if skip_root is not None and file.resolve().is_relative_to(skip_root):
            return False
    except OSError:
        return False
    return True


def _literal_prefix(pattern: str) -> str:
    """The folders of a glob pattern before its first wildcard ("photos/*/x*.jpg" -> "photos")."""
    parts = Path(pattern).parts
    literal = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        literal.append(part)
    return str(Path(*literal)) if literal else "."


def output_set_complete(stem: Path, pictures: tuple[str, ...], picture_format: str, explain: bool) -> bool:
    """Do all the outputs of an image exist, its report included? (An output set is written all together or
    not at all; a set found incomplete was changed since, or written with other options.)"""
    from gpuseg.pipeline import output_paths

    return all(p.is_file() for p in output_paths(stem, pictures, explain, picture_format).values())


@dataclass
class Summary:
    """What a run did: counts, megapixels, wall time and the seconds spent in each stage (summed)."""

    images: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    not_images: int = 0
    megapixels: float = 0.0
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)

    def add_stages(self, timings: dict[str, float]) -> None:
        for name, seconds in timings.items():
            if name != "total":
                self.stage_s[name] = self.stage_s.get(name, 0.0) + seconds

    def as_dict(self) -> dict[str, Any]:
        rate = self.wall_s if self.wall_s > 0 else float("nan")
        return {
            "images": self.images,
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "not_images": self.not_images,
            "megapixels": round(self.megapixels, 3),
            "wall_s": round(self.wall_s, 3),
            "images_per_s": round(self.done / rate, 3) if self.done else 0.0,
            "megapixels_per_s": round(self.megapixels / rate, 3) if self.done else 0.0,
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
        }


class Manifest:
    """``manifest.jsonl``: one JSON line per image, appended and flushed to disk as each image finishes,
    so that a crash loses nothing already recorded. Runs append to it; each line names its run (the time it
    started), and an image's last line is its state."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._file = None
        self.run = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}-{secrets.token_hex(3)}"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def record(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            return
        with self._lock:
            self._file.write(json.dumps({"run": self.run, **entry}) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass
class Decoded:
    item: Item
    image: Any = None
    seconds: float = 0.0
    error: BaseException | None = None


def segment_many(
    items: list[Item],
    *,
    options: dict[str, Any],
    pictures: tuple[str, ...] = ("overlay",),
    picture_format: str = "jpg",
    overwrite: bool = False,
    skip_existing: bool = False,
    jobs: int | None = None,
    explain: bool = False,
    manifest: Path | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_written: Callable[[Item], None] | None = None,
    not_images: int = 0,
) -> Summary:
    """Segment ``items`` and write each one's outputs, streaming: decoding (a pool of ``jobs`` threads)
    runs ahead of clustering (one image at a time, on the device, every core of a CPU), and encoding and
    writing (another pool) behind it; the queues between them are bounded so that only a few images are in
    memory at once. Each image's outputs appear together or not at all (:func:`gpuseg.save_outputs`).

    ``options`` are :func:`gpuseg.segment`'s (eps, min_samples, color, alpha, xy_scale, device, engine,
    max_pixels, max_memory). ``on_result`` is called in the calling thread with each manifest entry, as
    images finish (the command line's progress and tables); ``on_written`` in a writer thread as soon as an
    image's outputs and manifest line are written. An image that fails is recorded with its error
    and the run goes on. With ``skip_existing``, an image whose complete output set exists is skipped
    (recorded as such); an incomplete set is redone.

    Returns
    -------
    Summary
    """
    from gpuseg import gpu_decode
    from gpuseg.io import load_image
    from gpuseg.pipeline import check_run_memory, explain_panel, output_paths

    jobs = max(1, jobs or min(8, os.cpu_count() or 1))
    summary = Summary(images=len(items), not_images=not_images)
    log = Manifest(manifest)
    start = time.perf_counter()
    todo: list[Item] = []
    try:
        for item in items:
            if skip_existing and output_set_complete(item.stem, pictures, picture_format, explain):
                outputs = output_paths(item.stem, pictures, explain, picture_format).values()
                entry = _entry(item, "skipped", outputs=outputs)
                summary.skipped += 1
                log.record(_manifest_line(entry))
                if on_result:
                    on_result(entry)
            else:
                todo.append(item)
        ahead = _images_in_flight(todo, jobs)
        on_gpu = bool(todo) and _runs_on_gpu(options["device"])

        def decode(item: Item) -> Decoded:
            began = time.perf_counter()
            try:
                check_run_memory(
                    item.source, color=options["color"], xy_scale=options["xy_scale"], pictures=len(pictures),
                    explain=explain, max_memory=options.get("max_memory"),
                )  # fmt: skip
                if on_gpu and gpu_decode.decodes(item.source):
                    image = gpu_decode.load_image_on_gpu(item.source, max_pixels=options["max_pixels"])
                else:
                    image = load_image(item.source, max_pixels=options["max_pixels"])
                    if on_gpu:
                        image = gpu_decode.upload(image)
                return Decoded(item, image, time.perf_counter() - began)
            except Exception as exc:  # reported when its turn comes, in order
                return Decoded(item, error=exc, seconds=time.perf_counter() - began)

        decoders = ThreadPoolExecutor(jobs, thread_name_prefix="gpuseg-decode")
        writers = ThreadPoolExecutor(jobs, thread_name_prefix="gpuseg-write")
        try:
            pending_decodes: deque[Future] = deque()
            pending_writes: deque[tuple[Item, Future]] = deque()
            queue = iter(todo)

            def refill() -> None:
                while len(pending_decodes) < ahead:
                    item = next(queue, None)
                    if item is None:
                        return
                    pending_decodes.append(decoders.submit(decode, item))

            def finish_writes(keep: int) -> None:
                while len(pending_writes) > keep:
                    item, future = pending_writes.popleft()
                    _record(item, future, summary, on_result)

            refill()
            while pending_decodes:
                decoded = pending_decodes.popleft().result()
                refill()
                if decoded.error is not None:
                    _record_failure(decoded.item, decoded.error, summary, log, on_result)
                    continue
                try:
                    result = _cluster(decoded, options)
                    panel = explain_panel(result, device=options["device"]) if explain else None
                except Exception as exc:
                    _record_failure(decoded.item, exc, summary, log, on_result)
                    continue
                item = decoded.item
                del decoded
                write = writers.submit(
                    _write, item, result, pictures, picture_format, panel, overwrite or skip_existing, log, on_written
                )
                pending_writes.append((item, write))
                del result, panel
                finish_writes(keep=jobs)
            finish_writes(keep=0)
        except BaseException:  # an interrupt: drop what is queued; writers still running remove their files
            from gpuseg.io import abort_all_outputs

            abort_all_outputs()
            decoders.shutdown(wait=False, cancel_futures=True)
            writers.shutdown(wait=False, cancel_futures=True)
            raise
        decoders.shutdown()
        writers.shutdown()
    finally:
        log.close()
        summary.wall_s = time.perf_counter() - start
    return summary


def _images_in_flight(items: list[Item], jobs: int) -> int:
    """How many images may be decoded ahead of the one being clustered: ``jobs`` + 1, fewer when the largest
    of the first images, decoded, would not leave room for them in half the memory available."""
    from gpuseg.io import read_header
    from gpuseg.memory import available_memory

    largest = 0
    for item in items[:64]:  # the first images stand for the rest: a header read each
        try:
            header = read_header(item.source)
        except Exception:  # its decoding will fail, and say why
            continue
        largest = max(largest, header.pixels * header.channels * header.itemsize)
    room = 0.5 * available_memory() // max(largest, 1)
    return int(max(1, min(jobs + 1, room)))


def _runs_on_gpu(device: str) -> bool:
    """Will the run's images be clustered on a GPU (then decoded there where nvImageCodec can)?"""
    from gpuseg.device import resolve_device

    try:
        return resolve_device(device).kind == "gpu"
    except Exception:  # no GPU for device="gpu": each image's run says so
        return False


def _cluster(decoded: Decoded, options: dict[str, Any]):
    """Features and clustering of a decoded image (:func:`gpuseg.segment` on the array), with the report's
    source and load time those of the file."""
    from gpuseg.pipeline import segment

    result = segment(decoded.image, **{k: v for k, v in options.items() if k != "max_pixels"})
    timings = dict(result.report["timings_s"])
    timings["load"] = decoded.seconds
    timings["total"] = timings.get("total", 0.0) + decoded.seconds
    result.report["source"] = str(decoded.item.source)
    result.report["timings_s"] = timings
    return result


def _write(
    item: Item, result, pictures: tuple[str, ...], picture_format: str, panel, overwrite: bool, log, on_written
) -> dict:
    """Encode and write an image's outputs, then its manifest line at once (in this writer thread), so that
    an interrupt never leaves a finished image out of the manifest."""
    from gpuseg.pipeline import save_outputs

    try:
        save_outputs(
            result, item.stem, overwrite=overwrite, pictures=pictures, explain=panel, picture_format=picture_format
        )
    except Exception as exc:
        log.record(_manifest_line(_entry(item, "failed", error=exc)))
        raise
    report = result.report
    log.record(_manifest_line(_entry(item, "done", outputs=report["outputs"], timings=report["timings_s"])))
    if on_written:
        on_written(item)
    return report


def _record(item: Item, future: Future, summary: Summary, on_result) -> None:
    """Count a written image (its manifest line is already written) and tell ``on_result``."""
    try:
        report = future.result()
    except Exception as exc:
        summary.failed += 1
        if on_result:
            on_result(_entry(item, "failed", error=exc))
        return
    entry = done_entry(item, report, summary)
    if on_result:
        on_result(entry)


def done_entry(item: Item, report: dict[str, Any], summary: Summary) -> dict[str, Any]:
    """Count a finished image in ``summary`` (its megapixels and stage seconds); its entry for the manifest
    and ``on_result``."""
    h, w = report["image_shape"][:2]
    summary.done += 1
    summary.megapixels += h * w / 1e6
    summary.add_stages(report["timings_s"])
    return _entry(item, "done", outputs=report["outputs"], timings=report["timings_s"], report=report)


def _record_failure(item: Item, exc: BaseException, summary: Summary, log: Manifest, on_result) -> None:
    summary.failed += 1
    announce(_entry(item, "failed", error=exc), item, log, None, on_result)


def settle(item: Item, run: Callable[[], dict[str, Any]], summary: Summary, log: Manifest, on_written, on_result):
    """Take ``item``'s report from ``run()`` (a task's result, say), count it done or failed in ``summary`` and
    :func:`announce` it."""
    try:
        entry = done_entry(item, run(), summary)
    except Exception as exc:
        summary.failed += 1
        entry = _entry(item, "failed", error=exc)
    announce(entry, item, log, on_written, on_result)


def announce(entry: dict[str, Any], item: Item, log: Manifest, on_written, on_result) -> None:
    """Append ``entry``'s manifest line, then tell ``on_written`` (a finished image) and ``on_result``."""
    log.record(_manifest_line(entry))
    if entry["status"] == "done" and on_written:
        on_written(item)
    if on_result:
        on_result(entry)


def _manifest_line(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("report", "exception")}


def describe(exc: BaseException) -> str:
    """The error of a failed image, in words: the message of gpuseg's own and OS errors, else its type too."""
    from gpuseg.errors import GpusegError

    if isinstance(exc, (GpusegError, ValueError, OSError)):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def _entry(item: Item, status: str, *, outputs=(), timings=None, error=None, report=None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "source": str(item.source),
        "status": status,
        "outputs": [str(p) for p in outputs],
        "error": None if error is None else describe(error),
        "timings_s": timings,
    }
    if report is not None:
        entry["report"] = report
    if error is not None:
        entry["exception"] = error
    return entry
