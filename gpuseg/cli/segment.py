"""``gpuseg segment``: the command line's words for :func:`gpuseg.scale.many.segment_many`, with progress."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from gpuseg.cli.frame import command_frame, failure_message, first_run_notice, say_error
from gpuseg.cli.options import flag, with_options
from gpuseg.options import OutputOptions, SegmentOptions


@with_options(
    "eps", "min_samples", "color", "alpha", "xy_scale", "target_noise", "noise", "min_region", "device", "engine",
    "jobs", "picture_format", "overwrite", "max_pixels", "max_memory", "pictures", "explain", "scheduler", "chunk",
)  # fmt: skip
def segment(
    images: Annotated[
        list[str], typer.Argument(help="Image files, folders or glob patterns (PNG, JPEG, TIFF, BMP, WebP, ...).")
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            help="Where outputs go, mirroring the folders of the inputs; with more than one image, "
            "manifest.jsonl too (default: beside each image).",
        ),
    ] = None,
    recursive: Annotated[bool, flag("--recursive", "Take the images of subfolders too.")] = (False),
    skip_existing: Annotated[
        bool,
        flag("--skip-existing", "Skip images whose outputs all exist (report included); redo the others."),
    ] = False,
    as_json: Annotated[bool, flag("--json", "Print one JSON document with every report.")] = (False),
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Ground-truth label image: adds ARI and VI to the report.")
    ] = None,
    **values: Any,
) -> None:
    """Segment images: writes <stem>.labels.npy, .labels.png, the pictures asked for and .json per image.

    Images stream through decoding, clustering and writing at once; with --out-dir, manifest.jsonl gets a
    line per image as it finishes, and a summary ends the run. Images segmented in chunks (--chunk, or too
    large for memory) write <stem>.labels.zarr, .overview.<format> and .json instead.
    """
    from gpuseg.scale.inputs import expand_inputs
    from gpuseg.scale.many import segment_many

    with command_frame(usage=True):  # what is refused before any work is a usage error
        options = SegmentOptions(**{name: values[name] for name in SegmentOptions.names()})
        outputs = OutputOptions(**{name: values[name] for name in OutputOptions.names()})
        found = expand_inputs(images, out_dir, recursive)
    run = _Progress(len(found.items), as_json, found.expanded)
    with (
        command_frame(run.finished, usage=True),
        first_run_notice(),
        run.showing(),
        _client(values["scheduler"]) as client,
    ):
        summary = segment_many(
            found, options, outputs, out_dir=out_dir, client=client, jobs=values["jobs"], chunk=values["chunk"],
            skip_existing=skip_existing, truth=truth, on_result=run.on_result, on_written=run.written.append,
        )  # fmt: skip
    run.close(summary.as_dict(), summary.images)
    if summary.failed:
        raise typer.Exit(1)


@contextlib.contextmanager
def _client(scheduler: str | None) -> Iterator[Any]:
    """The Dask client of --scheduler (None without one)."""
    if scheduler is None:
        yield None
        return
    from gpuseg.scale.dask_cluster import dask_client

    with dask_client(scheduler) as client:
        yield client


class _Progress:
    """A run as the command line shows it: a progress bar (images/s, MP/s, ETA, failures) on stderr, a table
    per image and a summary on stdout, or one JSON document with --json."""

    def __init__(self, total: int, as_json: bool, expanded: bool = False) -> None:
        self.total, self.as_json, self.expanded = total, as_json, expanded
        self.written: list[Any] = []  # appended by writer threads as each image's outputs are complete
        self.reports: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self.megapixels = 0.0
        self._bar: Any = None
        self._tables: Any = None

    def finished(self) -> str:
        n = len(self.written)
        if not n:
            return ""
        rest = "; --skip-existing finishes the rest" if n + len(self.skipped) < self.total else ""
        return f"the outputs of {n} finished image(s) were kept{rest}"

    @contextlib.contextmanager
    def showing(self) -> Iterator[None]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._start = time.perf_counter()
        columns = (
            TextColumn("segmenting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(), TextColumn("{task.fields[failed]}"),
        )  # fmt: skip
        with Progress(*columns, console=Console(stderr=True), disable=self.total < 2, transient=True) as bar:
            self._bar = bar
            self._task = bar.add_task("segmenting", total=self.total, rate="", failed="")
            # tables to stdout (so that `> log` keeps them); through the progress display when both are the screen
            self._tables = bar.console if sys.stdout.isatty() else None
            yield

    def on_result(self, entry: dict[str, Any]) -> None:
        from rich.console import Console

        from gpuseg.cli.tables import report_table

        status = entry["status"]
        if status == "failed":
            message = failure_message(entry["exception"])
            self.failures.append({"source": entry["source"], "error": message})
            say_error(message)
        elif status == "skipped":
            self.skipped.append(entry["source"])
        else:
            report = entry["report"]
            self.reports.append(report)
            if self.as_json:  # the tables show them otherwise
                for warning in report["warnings"]:
                    typer.secho(f"warning: {report['source']}: {warning}", fg=typer.colors.YELLOW, err=True)
            h, w = report["image_shape"][:2]
            self.megapixels += h * w / 1e6
            if not self.as_json:
                (self._tables or Console()).print(report_table(report))
        if self._bar is not None:
            seconds = max(time.perf_counter() - self._start, 1e-9)
            done = len(self.reports)
            rate = f"{done / seconds:.2f} images/s, {self.megapixels / seconds:.1f} MP/s" if done else ""
            failed = f"{len(self.failures)} failed" if self.failures else ""
            self._bar.update(self._task, advance=1, rate=rate, failed=failed)

    def close(self, summary: dict[str, Any], images: int) -> None:
        if self.as_json:
            document = {"reports": self.reports, "failures": self.failures, "summary": summary}
            typer.echo(json.dumps(document, indent=2))
        elif images > 1 or summary["skipped"] or self.expanded:
            from rich.console import Console

            from gpuseg.cli.tables import summary_table

            Console().print(summary_table(summary))
