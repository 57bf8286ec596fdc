"""The one loop over many images: skip what is done, run the rest, record each image as it finishes.

Every way of running many images (the folder pipeline in threads, images as tasks on a Dask cluster, images
in chunks) is an :class:`Executor`; :func:`run_items` does the rest for all of them: the skip-existing check,
the manifest line of each image (written once, by the thread that finishes it), the summary, the callbacks,
and an interrupt that leaves a consistent manifest behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from gpuseg.errors import GpusegError
from gpuseg.scale.inputs import Item
from gpuseg.scale.manifest import Manifest

Status = Literal["done", "failed", "skipped"]


@dataclass
class Outcome:
    """How one image ended: ``done`` with its report, ``failed`` with its error, or ``skipped`` (its outputs
    exist); ``outputs`` are its files."""

    item: Item
    status: Status
    report: dict[str, Any] | None = None
    error: BaseException | None = None
    outputs: Sequence[Path | str] = ()
    recorded: bool = field(default=False, repr=False)
    """Its manifest line is written (by the thread that finished it, or by the loop)."""

    @classmethod
    def done(cls, item: Item, report: dict[str, Any]) -> Outcome:
        return cls(item, "done", report=report, outputs=report.get("outputs", ()))

    def entry(self) -> dict[str, Any]:
        """What the callbacks get: the manifest line, with the ``report`` of a finished image and the
        ``exception`` of a failed one."""
        entry = self.line()
        if self.report is not None:
            entry["report"] = self.report
        if self.error is not None:
            entry["exception"] = self.error
        return entry

    def line(self) -> dict[str, Any]:
        """The image's manifest line."""
        return {
            "source": str(self.item.source),
            "status": self.status,
            "outputs": [str(p) for p in self.outputs],
            "error": None if self.error is None else describe(self.error),
            "timings_s": None if self.report is None else self.report["timings_s"],
        }


def describe(exc: BaseException) -> str:
    """The error of a failed image, in words: the message of gpuseg's own and OS errors, else its type too."""
    if isinstance(exc, (GpusegError, ValueError, OSError)):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


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

    def count(self, outcome: Outcome) -> None:
        if outcome.status == "skipped":
            self.skipped += 1
        elif outcome.status == "failed":
            self.failed += 1
        else:
            assert outcome.report is not None
            h, w = outcome.report["image_shape"][:2]
            self.done += 1
            self.megapixels += h * w / 1e6
            for name, seconds in outcome.report["timings_s"].items():
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


class Record(Protocol):
    def __call__(self, outcome: Outcome) -> None: ...


class Executor(Protocol):
    """How the images of a run are executed."""

    def paths(self, item: Item) -> list[Path]:
        """The files an image's run writes, the report last."""
        ...

    def complete(self, item: Item) -> bool:
        """Are all of an image's outputs there (its report included)?"""
        ...

    def run(self, items: list[Item], record: Record) -> Iterator[Outcome]:
        """Run ``items``, yielding each image's outcome (in the calling thread) as it finishes; a thread that
        finishes an image may ``record`` it at once. On an interrupt, drop the work queued and leave nothing
        partial."""
        ...


class _Recorder:
    """Each outcome's manifest line, once, and ``on_written`` for a finished image (thread-safe)."""

    def __init__(self, manifest: Manifest, on_written: Callable[[Item], None] | None) -> None:
        self.manifest, self.on_written = manifest, on_written
        self._lock = threading.Lock()

    def __call__(self, outcome: Outcome) -> None:
        with self._lock:
            if outcome.recorded:
                return
            outcome.recorded = True
        self.manifest.record(outcome.line())
        if outcome.status == "done" and self.on_written:
            self.on_written(outcome.item)


def run_items(
    groups: Sequence[tuple[Sequence[Item], Executor]],
    *,
    manifest: Path | None = None,
    skip_existing: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_written: Callable[[Item], None] | None = None,
    not_images: int = 0,
) -> Summary:
    """Run each group of images with its executor, one group after the other, into one manifest and summary.

    With ``skip_existing``, an image whose outputs all exist is skipped (and recorded so); an incomplete set
    is done again. ``on_result`` is called in the calling thread with each image's entry as it finishes (the
    command line's progress and tables); ``on_written`` in the thread that wrote an image, as soon as its
    outputs and manifest line are written. An image that fails is recorded with its error and the run goes
    on.

    Raises
    ------
    GpusegError
        The manifest cannot be opened (a link, not a file, or another run holds it).
    """
    summary = Summary(images=sum(len(items) for items, _ in groups), not_images=not_images)
    log = Manifest(manifest)
    record = _Recorder(log, on_written)
    start = time.perf_counter()

    def settle(outcome: Outcome) -> None:
        record(outcome)
        summary.count(outcome)
        if on_result:
            on_result(outcome.entry())

    try:
        for items, executor in groups:
            todo = []
            for item in items:
                if skip_existing and executor.complete(item):
                    settle(Outcome(item, "skipped", outputs=executor.paths(item)))
                else:
                    todo.append(item)
            if not todo:
                continue
            outcomes = executor.run(todo, record)
            try:
                for outcome in outcomes:
                    settle(outcome)
            finally:
                outcomes.close()  # type: ignore[attr-defined]
    finally:
        log.close()
        summary.wall_s = time.perf_counter() - start
    return summary
