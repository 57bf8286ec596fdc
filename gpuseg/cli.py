"""The `gpuseg` command line: thin commands over the Python API.

Heavy libraries (numba, scikit-learn, CuPy, cuML, OpenCV) are imported inside the commands, so that
`gpuseg --help` answers at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gpuseg import __version__
from gpuseg.device import DEVICES
from gpuseg.engines import ENGINE_NAMES
from gpuseg.errors import OutputExistsError
from gpuseg.features import ALPHA_MODES, COLOR_SPACES
from gpuseg.pipeline import (
    DEFAULT_COLOR,
    DEFAULT_EPS,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_TARGET_NOISE,
    DEFAULT_XY_SCALE,
    NOISE_MODES,
    PICTURE_FORMATS,
)

app = typer.Typer(
    name="gpuseg",
    help="Segment images by clustering their pixels with exact DBSCAN, on CUDA GPUs and on CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Choices come from the library's own lists, so the command line cannot drift from the API.
Color = StrEnum("Color", {name: name for name in COLOR_SPACES})
Alpha = StrEnum("Alpha", {name: name for name in ALPHA_MODES})
DeviceOpt = StrEnum("DeviceOpt", {name: name for name in DEVICES})
EngineOpt = StrEnum("EngineOpt", {name.replace("-", "_"): name for name in ENGINE_NAMES})


def _err(message: str) -> None:
    typer.secho(f"error: {cli_words(message)}", fg=typer.colors.RED, err=True)


_PARAMETER = re.compile(
    r"\b(eps|min_samples|xy_scale|device|engine|overwrite|max_pixels|max_memory|color|alpha|target_noise|noise"
    r"|min_region|chunk|scheduler)=('?)([^'\s,;)]*)\2"
)


def cli_words(message: str) -> str:
    """A library message in the command line's words: ``device='cpu'`` -> ``--device cpu``,
    ``overwrite=True`` -> ``--overwrite``, ``xy_scale=None`` -> ``--xy-scale 0``."""

    def option(match: re.Match) -> str:
        name, value = "--" + match[1].replace("_", "-"), match[3]
        if value == "True":
            return name
        return f"{name} {'0' if value == 'None' else value}"

    return _PARAMETER.sub(option, message)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the command unwinds like on Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise _Terminated


@contextlib.contextmanager
def _command_frame(finished: Callable[[], str] | None = None):
    """What every command runs in: a project error is one line and exit 1; Ctrl-C or SIGTERM discards the
    outputs in progress and exits at once (130 / 143), saying what ``finished()`` kept; anything unexpected
    is one line and exit 1 (GPUSEG_DEBUG=1 shows the traceback)."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except (KeyboardInterrupt, _Terminated) as exc:
        _interrupted(143 if isinstance(exc, _Terminated) else 130, finished() if finished else "")
    except typer.Exit:
        raise
    except Exception as exc:
        from gpuseg.errors import GpusegError

        if os.environ.get("GPUSEG_DEBUG"):
            raise
        if isinstance(exc, (GpusegError, ValueError, OSError)):
            _err(str(exc))
        else:
            _err(f"unexpected {type(exc).__name__}: {exc} (GPUSEG_DEBUG=1 shows where; please report it)")
        raise typer.Exit(1) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(code: int, kept: str = "") -> None:
    """Discard the outputs in progress and exit; without waiting for threads still computing or encoding."""
    import threading

    from gpuseg.io import abort_all_outputs

    abort_all_outputs()
    _err("interrupted; nothing partial was left" + (f"; {kept}" if kept else ""))
    from gpuseg.interrupts import compute_threads_alive

    others = (t for t in threading.enumerate() if t.name.startswith("gpuseg-") and t.name != "gpuseg-compute")
    if compute_threads_alive() or any(t.is_alive() for t in others):  # work that would hold the exit up
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def _flag(name: str, help: str):
    return typer.Option(name, metavar="", help=help)


def _eps(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value}: give a positive distance in feature units, such as 0.055")
    return value


def _eps_or_auto(value: str) -> float | str:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise typer.BadParameter(f"{value!r}: give a positive distance in feature units, such as 0.055, or auto")
    return number


def _fraction(value: float | None) -> float | None:
    if value is not None and not (0 <= value < 1):
        raise typer.BadParameter(f"{value}: give a fraction in [0, 1), such as 0.1 for 10% noise")
    return value


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _byte_size(value: str | None) -> int | None:
    """A memory size: bytes (1e9, 1000000000) or with a unit (512M, 16G, 1.5T; powers of 1024)."""
    if value is None:
        return None
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    try:
        size = float(text[: len(text) - len(unit)]) * _UNITS[unit]
    except ValueError:
        size = -1.0
    if not (math.isfinite(size) and size > 0):
        raise typer.BadParameter(f"{value!r}: give a size such as 16G, 512M or 8e9 (bytes)")
    return int(size)


def _xy_scale(value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value}: give 0 for colour only, or a positive scale such as 0.01")
    return value


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpuseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, metavar="", help="Print the version."),
    ] = None,
) -> None:
    """Segment images by clustering their pixels with exact DBSCAN, on CUDA GPUs and on CPUs."""
    if "numba" not in sys.modules:  # compiled kernels are cached where this user can write, whatever the install
        os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))


def cache_dir() -> Path:
    """gpuseg's cache folder: $XDG_CACHE_HOME/gpuseg or ~/.cache/gpuseg."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpuseg"


@contextlib.contextmanager
def _first_run_notice():
    """Say once per machine, gpuseg and numba version and installed copy of gpuseg (numba's cache is keyed by
    the source files' paths, so a second copy compiles again) that the first run compiles the kernels."""
    import hashlib
    from importlib import metadata

    copy = hashlib.sha1(str(Path(__file__).resolve().parent).encode()).hexdigest()[:10]
    marker = cache_dir() / f"kernels-{__version__}-numba-{metadata.version('numba')}-{copy}.ready"
    first = not marker.exists()
    if first:
        typer.echo(
            f"first run: compiling gpuseg's kernels for this machine (10-20 s, cached in "
            f"{os.environ.get('NUMBA_CACHE_DIR', 'numba cache')})",
            err=True,
        )
    yield
    if first:
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()


ColorArg = Annotated[Color, typer.Option("--color", help="Colour features.")]
AlphaArg = Annotated[Alpha, typer.Option("--alpha", help="What to do with an alpha channel.")]
XyScaleArg = Annotated[
    float, typer.Option("--xy-scale", callback=_xy_scale, help="Position features x*s, y*s; 0 for colour only.")
]
EpsOpt = Annotated[
    float, typer.Option("--eps", callback=_eps, help="DBSCAN radius in feature units (colours in [0, 1]).")
]
AutoEpsOpt = Annotated[
    str,
    typer.Option(
        "--eps",
        callback=_eps_or_auto,
        help="DBSCAN radius in feature units (colours in [0, 1]), or auto: the eps for --target-noise.",
    ),
]
TargetNoiseOpt = Annotated[
    Optional[float],
    typer.Option("--target-noise", callback=_fraction, help="Noise fraction that --eps auto aims at (default 0.1)."),
]
MinSamplesOpt = Annotated[
    int, typer.Option("--min-samples", min=1, help="Neighbourhood weight that makes a core sample.")
]
DeviceArg = Annotated[DeviceOpt, typer.Option("--device", help="auto: a CUDA GPU when there is one.")]
EngineArg = Annotated[EngineOpt, typer.Option("--engine", help="auto: gpuseg's exact engine for the input.")]


PictureFormat = StrEnum("PictureFormat", {name: name for name in PICTURE_FORMATS})
NoiseOpt = StrEnum("NoiseOpt", {name: name for name in NOISE_MODES})


@app.command()
def segment(
    images: Annotated[
        list[str], typer.Argument(help="Image files, folders or glob patterns (PNG, JPEG, TIFF, BMP, WebP, ...).")
    ],
    eps: AutoEpsOpt = str(DEFAULT_EPS),
    min_samples: MinSamplesOpt = DEFAULT_MIN_SAMPLES,
    color: ColorArg = Color(DEFAULT_COLOR),
    alpha: AlphaArg = Alpha.ignore,
    xy_scale: XyScaleArg = DEFAULT_XY_SCALE,
    target_noise: TargetNoiseOpt = None,
    noise: Annotated[
        NoiseOpt,
        typer.Option("--noise", help="fill: give each noise pixel the cluster of the nearest clustered pixel."),
    ] = NoiseOpt.keep,
    min_region: Annotated[
        int,
        typer.Option(
            "--min-region", min=0, help="Regions smaller than this (pixels) join the neighbour of longest border."
        ),
    ] = 0,
    device: DeviceArg = DeviceOpt.auto,
    engine: EngineArg = EngineOpt.auto,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out-dir",
            help="Where outputs go, mirroring the folders of the inputs; with more than one image, "
            "manifest.jsonl too (default: beside each image).",
        ),
    ] = None,
    recursive: Annotated[bool, _flag("--recursive", "Take the images of subfolders too.")] = False,
    skip_existing: Annotated[
        bool, _flag("--skip-existing", "Skip images whose outputs all exist (report included); redo the others.")
    ] = False,
    jobs: Annotated[
        Optional[int],
        typer.Option("--jobs", min=1, help="Threads decoding and threads writing (default: the cores, at most 8)."),
    ] = None,
    picture_format: Annotated[
        PictureFormat, typer.Option("--picture-format", help="Format of the pictures; label maps stay lossless.")
    ] = PictureFormat(PICTURE_FORMATS[0]),
    as_json: Annotated[bool, _flag("--json", "Print one JSON document with every report.")] = False,
    overwrite: Annotated[bool, _flag("--overwrite", "Replace existing outputs.")] = False,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Refuse larger images.")] = 2**28,
    max_memory: Annotated[
        Optional[str],
        typer.Option(
            "--max-memory",
            callback=_byte_size,
            help="Refuse runs predicted to need more memory than this, e.g. 16G (default: what is available).",
        ),
    ] = None,
    save: Annotated[
        str, typer.Option("--save", help="Pictures to write: any of overlay,mean,boundaries,noise (or none).")
    ] = "overlay",
    explain: Annotated[
        bool, _flag("--explain", "Also write <stem>.explain.<format>: input, colour only, + position, noise.")
    ] = False,
    truth: Annotated[
        Optional[Path], typer.Option("--truth", help="Ground-truth label image: adds ARI and VI to the report.")
    ] = None,
    scheduler: Annotated[
        Optional[str],
        typer.Option(
            "--scheduler",
            help="Run on Dask: local[:N] (N worker processes), local-cuda (a worker per GPU) or tcp://HOST:PORT.",
        ),
    ] = None,
    chunk: Annotated[
        Optional[int],
        typer.Option(
            "--chunk",
            min=1,
            help="Segment each image in chunks of N pixels a side, exactly (labels as <stem>.labels.zarr); "
            "automatic for a TIFF or Zarr that would not fit in memory.",
        ),
    ] = None,
) -> None:
    """Segment images: writes <stem>.labels.npy, .labels.png, the pictures asked for and .json per image.

    Images stream through decoding, clustering and writing at once; with --out-dir, manifest.jsonl gets a
    line per image as it finishes, and a summary ends the run. Images segmented in chunks (--chunk, or too
    large for memory) write <stem>.labels.zarr, .overview.<format> and .json instead.
    """
    from gpuseg.batch import MANIFEST, expand_inputs
    from gpuseg.pictures import PICTURES

    pictures = tuple(p for p in save.split(",") if p and p != "none")
    unknown = [p for p in pictures if p not in PICTURES]
    if unknown:
        _err(f"--save {save!r}: {', '.join(unknown)} not among {', '.join(PICTURES)} (or none)")
        raise typer.Exit(2)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        _err(f"--out-dir {str(out_dir)!r} is a file: give a folder (it is created if missing)")
        raise typer.Exit(2)
    if scheduler is not None:
        _check_scheduler(scheduler)
    zarr_items, images = _zarr_inputs(images, out_dir)
    try:
        found = expand_inputs(images, out_dir, recursive)
    except FileNotFoundError as exc:
        _err(str(exc))
        raise typer.Exit(2) from None
    found.items.extend(zarr_items)
    if not found.items:
        hint = "" if recursive else "; --recursive for subfolders"
        _err(f"no images in {', '.join(images)} ({found.not_images} other file(s) passed over{hint})")
        raise typer.Exit(2)
    if target_noise is not None and eps != "auto":
        _err(f"--target-noise {target_noise:g} chooses eps: add --eps auto, or drop --target-noise")
        raise typer.Exit(2)
    if truth is not None and len(found.items) > 1:
        _err("--truth compares one image with its ground truth; give one image")
        raise typer.Exit(2)
    _check_stems(found.items)
    pictures_format = picture_format.value
    if out_dir is not None:
        _check_out_dir(out_dir)
    options = dict(
        eps=eps,
        min_samples=min_samples,
        color=color.value,
        alpha=alpha.value,
        xy_scale=xy_scale,
        device=device.value,
        engine=engine.value,
        max_pixels=max_pixels,
        max_memory=max_memory,
        noise=noise.value,
        min_region=min_region,
        **({"target_noise": target_noise} if target_noise is not None else {}),
        **({"truth": truth} if truth is not None else {}),
    )
    chunked = _chunked_items(found, zarr_items, chunk, options)
    if chunked and (explain or truth is not None):
        _err(f"{chunked[0].source} is segmented in chunks, which write labels and an overview only: --explain and "
             "--truth need the whole image in memory")  # fmt: skip
        raise typer.Exit(2)
    if chunked and (eps == "auto" or noise.value != "keep" or min_region):
        _err(f"{chunked[0].source} is segmented in chunks, which give DBSCAN's exact labels only: --eps auto, "
             "--noise fill and --min-region need the whole image in memory; give eps, or a smaller image")  # fmt: skip
        raise typer.Exit(2)
    if not (overwrite or skip_existing):
        _refuse_existing(found.items, pictures, pictures_format, explain)
        _refuse_existing_chunked(chunked, pictures_format)
    manifest = (
        out_dir / MANIFEST if out_dir is not None and (found.expanded or len(found.items) + len(chunked) > 1) else None
    )
    run = _BatchRun(len(found.items) + len(chunked), as_json, found.expanded)
    with _command_frame(run.finished), _first_run_notice(), run.progress(), _scheduler_client(scheduler) as client:
        summary = None
        if found.items:
            summary = run.segment_many(
                found,
                options=options,
                pictures=pictures,
                picture_format=pictures_format,
                overwrite=overwrite,
                skip_existing=skip_existing,
                jobs=jobs,
                explain=explain,
                manifest=manifest,
                client=client,
            )
        if chunked:
            from gpuseg.chunked import segment_chunked_many

            summary = segment_chunked_many(
                chunked, options=options, chunk=chunk, client=client, picture_format=pictures_format,
                overwrite=overwrite, skip_existing=skip_existing, manifest=manifest, on_result=run._on_result,
                on_written=run.written.append, summary=summary,
            )  # fmt: skip
    run.close(summary)
    if summary.failed:
        raise typer.Exit(1)


class _BatchRun:
    """The command line's view of :func:`gpuseg.batch.segment_many`: a progress bar (images/s, MP/s, ETA,
    failures) on stderr, a table per image and a summary on stdout, or one JSON document with --json."""

    def __init__(self, total: int, as_json: bool, expanded: bool = False):
        self.total, self.as_json, self.expanded = total, as_json, expanded
        self.written: list = []  # appended by writer threads as each image's outputs are complete
        self.reports: list[dict] = []
        self.failures: list[dict] = []
        self.skipped: list[str] = []
        self.megapixels = 0.0
        self._progress = None

    def finished(self) -> str:
        n = len(self.written)
        if not n:
            return ""
        rest = "; --skip-existing finishes the rest" if n + len(self.skipped) < self.total else ""
        return f"the outputs of {n} finished image(s) were kept{rest}"

    @contextlib.contextmanager
    def progress(self):
        import time

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._start = time.perf_counter()
        columns = (
            TextColumn("segmenting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(), TextColumn("{task.fields[failed]}"),
        )  # fmt: skip
        with Progress(*columns, console=Console(stderr=True), disable=self.total < 2, transient=True) as progress:
            self._progress = progress
            self._task = progress.add_task("segmenting", total=self.total, rate="", failed="")
            # tables to stdout (so that `> log` keeps them); through the progress display when both are the screen
            self._tables = progress.console if sys.stdout.isatty() else None
            yield

    def segment_many(self, found, client=None, **kwargs):
        from gpuseg.batch import segment_many

        if client is not None:
            from gpuseg.distributed import segment_many_distributed

            kwargs.pop("jobs", None)
            return segment_many_distributed(
                found.items,
                client=client,
                not_images=found.not_images,
                on_result=self._on_result,
                on_written=self.written.append,
                **kwargs,
            )
        return segment_many(
            found.items,
            not_images=found.not_images,
            on_result=self._on_result,
            on_written=self.written.append,
            **kwargs,
        )

    def _on_result(self, entry: dict) -> None:
        import time

        from rich.console import Console

        status = entry["status"]
        if status == "failed":
            message = _failure_message(entry["exception"])
            self.failures.append({"source": entry["source"], "error": message})
            _err(message)
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
                (self._tables or Console()).print(_report_table(report))
        if self._progress is not None:
            seconds = max(time.perf_counter() - self._start, 1e-9)
            done = len(self.reports)
            rate = f"{done / seconds:.2f} images/s, {self.megapixels / seconds:.1f} MP/s" if done else ""
            failed = f"{len(self.failures)} failed" if self.failures else ""
            self._progress.update(self._task, advance=1, rate=rate, failed=failed)

    def close(self, summary) -> None:
        if self.as_json:
            document = {"reports": self.reports, "failures": self.failures, "summary": summary.as_dict()}
            typer.echo(json.dumps(document, indent=2))
        elif summary.images > 1 or summary.skipped or self.expanded:
            from rich.console import Console

            Console().print(_summary_table(summary.as_dict()))


def _summary_table(summary: dict):
    from rich.table import Table

    from gpuseg.report import format_seconds

    table = Table(title="summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    counts = f"{summary['done']} done, {summary['failed']} failed, {summary['skipped']} skipped (outputs exist)"
    if summary["not_images"]:
        counts += f", {summary['not_images']} other file(s) passed over"
    table.add_row("images", counts)
    table.add_row(
        "throughput",
        f"{summary['megapixels']:.1f} MP in {format_seconds(summary['wall_s'])}: "
        f"{summary['images_per_s']:.2f} images/s, {summary['megapixels_per_s']:.2f} MP/s",
    )
    stages = ", ".join(f"{k} {format_seconds(v)}" for k, v in summary["stage_s"].items() if v > 0)
    table.add_row("time in stages", stages or "-")
    return table


def _check_scheduler(scheduler: str) -> None:
    """A usage error (exit 2) for a --scheduler of no known form."""
    from gpuseg.distributed import parse_scheduler

    try:
        parse_scheduler(scheduler)
    except ValueError as exc:
        _err(cli_words(str(exc)))
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _scheduler_client(scheduler: str | None):
    """The Dask client of --scheduler (None without one)."""
    if scheduler is None:
        yield None
        return
    from gpuseg.distributed import dask_client

    with dask_client(scheduler) as client:
        yield client


def _zarr_inputs(images: list[str], out_dir: Path | None):
    """Zarr folders among the inputs are images (segmented in chunks), not folders of images."""
    if not any(Path(p).is_dir() for p in images):
        return [], images
    from gpuseg.chunked import zarr_inputs

    return zarr_inputs(images, out_dir)


def _chunked_items(found, zarr_items: list, chunk: int | None, options: dict) -> list:
    """The images to segment in chunks (taken out of ``found``): all with --chunk; else Zarr inputs and
    TIFFs too large for memory."""
    from gpuseg.chunked import needs_chunks

    if chunk is not None:
        items, found.items[:] = list(found.items), []
        return items
    chunked = [item for item in found.items if item in zarr_items or needs_chunks(item.source, options)]
    found.items[:] = [item for item in found.items if item not in chunked]
    return chunked


def _refuse_existing_chunked(items, picture_format: str) -> None:
    from gpuseg.chunked import chunked_output_paths

    for item in items:
        existing = [p for p in chunked_output_paths(item.stem, picture_format).values() if p.exists()]
        if existing:
            _err(f"{existing[0]} exists; pass --skip-existing to do the others, or --overwrite to replace it")
            raise typer.Exit(1)


def _check_out_dir(out_dir: Path) -> None:
    """--out-dir must be a folder, or creatable in a writable one (created only when something is written)."""
    folder = out_dir.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        _err(f"--out-dir {str(out_dir)!r}: {folder} is a file: give a folder (it is created if missing)")
        raise typer.Exit(2)
    if not os.access(folder, os.W_OK | os.X_OK):
        _err(f"--out-dir {str(out_dir)!r}: {folder} is not writable; give a writable folder")
        raise typer.Exit(1)


def _refuse_existing(items, pictures: tuple[str, ...], picture_format: str, explain: bool) -> None:
    """Exit 1 before any work when images already have outputs and neither --overwrite nor --skip-existing
    says what to do with them."""
    from gpuseg.pipeline import output_paths

    done = [
        item
        for item in items
        if any(p.exists() for p in output_paths(item.stem, pictures, explain, picture_format).values())
    ]
    if done:
        example = next(p for p in output_paths(done[0].stem, pictures, explain, picture_format).values() if p.exists())
        _err(
            f"{len(done)} of {len(items)} image(s) already have outputs (e.g. {example}); pass --skip-existing "
            "to do the others, or --overwrite to replace them"
        )
        raise typer.Exit(1)


def _failure_message(exc: BaseException) -> str:
    from gpuseg.errors import GpusegError

    if os.environ.get("GPUSEG_DEBUG"):
        raise exc
    if isinstance(exc, (GpusegError, ValueError, OSError)):
        return cli_words(str(exc))
    return f"unexpected {type(exc).__name__}: {exc} (GPUSEG_DEBUG=1 shows where; please report it)"


def _check_stems(items) -> None:
    """A usage error (exit 2) when an image is given twice (also through overlapping folders or patterns), or
    two inputs would write the same files."""
    seen: dict[Path, Path] = {}
    for item in items:
        key = item.source.resolve()
        if key in seen:
            _err(f"{item.source} is given twice (also as {seen[key]}); give each image, folder or pattern once")
            raise typer.Exit(2)
        seen[key] = item.source
    first: dict[Path, Path] = {}
    for item in items:
        key = item.stem.resolve()
        if key in first:
            if first[key].resolve() == item.source.resolve():
                _err(f"{item.source} is given twice; give each image once")
            else:
                _err(
                    f"{item.source} and {first[key]} would both write {item.stem}.*; rename one, or segment them "
                    "into separate --out-dir folders"
                )
            raise typer.Exit(2)
        first[key] = item.source


def _report_table(report: dict):
    from rich.markup import escape
    from rich.table import Table

    from gpuseg.report import format_seconds

    table = Table(title=escape(str(report["source"])), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    h, w = report["image_shape"][:2]
    table.add_row("image", f"{w} x {h}, {report['n_samples']:,} samples, features {', '.join(report['features'])}")
    parameters = f"eps {report['eps']:.4g}, min_samples {report['min_samples']}"
    if report["eps_search"]:
        search = report["eps_search"]
        parameters += f" (eps for {search['target_noise']:.0%} noise, found in {len(search['runs'])} runs)"
    table.add_row("parameters", parameters)
    device = f"{report['device']} ({report['device_name']})"
    if report["fallback_reason"]:
        device += f" - CPU because {report['fallback_reason']}"
    table.add_row("device", escape(device))
    table.add_row("engine", escape(report["engine"] + (f" - {report['engine_note']}" if report["engine_note"] else "")))
    n = report["n_clusters"]
    table.add_row("clusters", f"{n} cluster{'' if n == 1 else 's'}, noise {report['noise_fraction']:.1%}")
    if report["postprocess"]:
        post, done = report["postprocess"], []
        if post["noise"] == "fill":
            done.append(f"{post['filled']:,} noise pixels filled")
        if post["min_region"] > 1:
            done.append(f"{post['merged_regions']:,} regions under {post['min_region']} px merged")
        n = post["n_clusters"]
        table.add_row(
            "after", f"{', '.join(done)}: {n} cluster{'' if n == 1 else 's'}, noise {post['noise_fraction']:.1%}"
        )
    for warning in report["warnings"]:
        table.add_row("warning", f"[yellow]{escape(warning)}[/]")
    if report["quality"]:
        q = report["quality"]
        ari, vi = q["adjusted_rand_index"], q["variation_of_information"]
        table.add_row("vs truth", f"adjusted Rand {ari:.3f}, variation of information {vi:.3f}")
    stages = ", ".join(f"{k} {format_seconds(v)}" for k, v in report["timings_s"].items() if v > 0 or k == "total")
    table.add_row("time", stages)
    return table


@app.command()
def suggest(
    image: Annotated[Path, typer.Argument(help="The image to suggest eps for.")],
    min_samples: MinSamplesOpt = DEFAULT_MIN_SAMPLES,
    color: ColorArg = Color(DEFAULT_COLOR),
    alpha: AlphaArg = Alpha.ignore,
    xy_scale: XyScaleArg = DEFAULT_XY_SCALE,
    target_noise: Annotated[
        float,
        typer.Option("--target-noise", callback=_fraction, help="Noise fraction to find eps for, beside the knee."),
    ] = DEFAULT_TARGET_NOISE,
    device: DeviceArg = DeviceOpt.auto,
    plot: Annotated[
        Optional[Path], typer.Option("--plot", help="Where the k-distance plot goes (default <stem>.kdist.png).")
    ] = None,
    overwrite: Annotated[bool, _flag("--overwrite", "Replace an existing plot.")] = False,
) -> None:
    """Suggest eps for an image: the knee of its k-distance curve (k = min samples), with a plot, and the eps
    for a target noise fraction (found by clustering the image a few times); says which it recommends."""
    from gpuseg.io import load_image
    from gpuseg.suggest import plot_k_distances, suggest_eps

    scale = xy_scale or None
    plot = plot or image.with_name(image.stem + ".kdist.png")
    with _command_frame(), _first_run_notice():
        if plot.exists() and not overwrite:
            raise OutputExistsError(f"{plot}: exists; pass --overwrite to replace it, or choose --plot")
        s = suggest_eps(
            load_image(image), min_samples=min_samples, color=color.value, alpha=alpha.value, xy_scale=scale,
            target_noise=target_noise, device=device.value,
        )  # fmt: skip
        plot_k_distances(s, plot, overwrite=overwrite)

    def result(noise: float, largest: float) -> str:
        return f"{noise:.1%} noise, largest cluster {largest:.0%} of the pixels"

    knee = f"knee of the {min_samples}-distance curve of {len(s.k_distances):,} pixels"
    typer.echo(f"eps {s.knee_eps:.4g}: {knee}: {result(s.knee_noise, s.knee_largest_cluster)}")
    typer.echo(
        f"eps {s.target_eps:.4g}: for {s.target_noise:.0%} noise ({s.search_runs} runs): "
        f"{result(s.target_noise_fraction, s.target_largest_cluster)}"
    )
    from gpuseg.report import GIANT_CLUSTER
    from gpuseg.suggest import KNEE_SLACK

    if s.recommended == "knee":
        why = f"its noise is at most the target + {KNEE_SLACK:.0%} and no cluster holds {GIANT_CLUSTER:.0%}"
    else:
        reasons = []
        if s.knee_noise > s.target_noise + KNEE_SLACK:
            reasons.append(f"the knee leaves {s.knee_noise:.1%} noise, more than the target + {KNEE_SLACK:.0%}")
        if s.knee_largest_cluster > GIANT_CLUSTER:
            reasons.append(f"at the knee one cluster holds {s.knee_largest_cluster:.1%} of the pixels")
        why = "; ".join(reasons)
    typer.echo(f"recommended: eps {s.eps:.4g} ({'the knee' if s.recommended == 'knee' else 'the target'}: {why})")
    for warning in s.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    if s.radius_px is not None:
        typer.echo(f"with xy_scale {scale:g}, two pixels can be neighbours up to {s.radius_px} pixels apart")
    typer.echo(f"plot: {plot}")
    command = (
        f"gpuseg segment {image} --eps {s.eps:.4g} --min-samples {min_samples} --color {color.value} "
        f"--alpha {alpha.value} --xy-scale {xy_scale:g}"
    )
    typer.echo(f"run: {command}")


@app.command()
def cluster(
    points: Annotated[Path, typer.Argument(help="Feature rows: .npy (N, F) or .csv (one row per sample).")],
    eps: EpsOpt,
    min_samples: MinSamplesOpt,
    device: DeviceArg = DeviceOpt.auto,
    engine: EngineArg = EngineOpt.auto,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Labels file, .npy or .csv (default <stem>.labels.npy).")
    ] = None,
    overwrite: Annotated[bool, _flag("--overwrite", "Replace an existing labels file.")] = False,
) -> None:
    """DBSCAN on a feature array; labels (-1 noise) to .npy or .csv."""
    import numpy as np

    from gpuseg.cluster import cluster_features
    from gpuseg.features import points_features
    from gpuseg.io import atomic_write, save_npy
    from gpuseg.points import read_points

    out = out or points.with_name(points.stem + ".labels.npy")
    with _command_frame(), _first_run_notice():
        if out.suffix not in (".npy", ".csv"):
            raise ValueError(f"--out {out}: the labels file must end in .npy or .csv")
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out}: exists; pass --overwrite to replace it")
        X = read_points(points)
        run = cluster_features(
            points_features(X), eps=eps, min_samples=min_samples, device=device.value, engine=engine.value
        )
        labels = run.labels.astype(np.int32)
        if out.suffix == ".npy":
            save_npy(out, labels, overwrite=overwrite)
        else:
            atomic_write(out, lambda f: np.savetxt(f, labels, fmt="%d"), overwrite=overwrite)
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    clusters = f"{n_clusters} cluster{'' if n_clusters == 1 else 's'}"
    typer.echo(
        f"{points}: {labels.size:,} samples, {clusters}, noise {(labels < 0).mean():.1%}, "
        f"engine {run.engine} on {run.device.kind} -> {out}"
    )


@app.command()
def bench(
    quick: Annotated[
        bool,
        _flag("--quick", "Only the 750 blobs, the RGBA logo and the photo at 0.25 MP (or at --sizes)."),
    ] = False,
    device: DeviceArg = DeviceOpt.auto,
    engine: Annotated[
        Optional[list[EngineOpt]], typer.Option("--engine", help="Only these engines (repeat the option).")
    ] = None,
    sizes: Annotated[
        Optional[str], typer.Option("--sizes", help="Photo sizes in megapixels, e.g. 0.25,1,2,12,50.")
    ] = None,
    case: Annotated[
        Optional[list[str]],
        typer.Option("--case", help="Only the cases whose name contains this text, e.g. '40k' (repeat the option)."),
    ] = None,
    repeat: Annotated[
        Optional[int],
        typer.Option("--repeat", min=1, help="Timed runs per engine, median reported (default 5; 3 with --quick)."),
    ] = None,
    timeout: Annotated[
        Optional[float],
        typer.Option(
            "--timeout",
            min=1,
            help="Seconds after which one engine's run on a case is stopped, an error (default 1800).",
        ),
    ] = None,
    pipeline: Annotated[
        bool,
        _flag(
            "--pipeline",
            "Instead: segment a generated folder of JPEG photos (--images of --sizes MP, default 10 of 1.2) with "
            "the streaming pipeline, beside one image at a time; writes pipeline.json.",
        ),
    ] = False,
    images: Annotated[int, typer.Option("--images", min=1, help="Images in the --pipeline folder.")] = 10,
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.json, bench.csv and bench.png.")] = Path(
        "gpuseg-bench"
    ),
) -> None:
    """Time every engine beside scikit-learn on point sets, generated images and a photo of growing size.

    Cases: make_blobs points (750; 1M in 2-D, 3-D; 40k in 6-D, 8-D), a generated RGBA logo (500x500) and shapes
    image (1411x1411), and the rows of pixel_features() given to dbscan().

    Photo: Grace Hopper's portrait from matplotlib's sample data, cropped or mirror-tiled to each of --sizes.

    Runs this machine cannot do (no GPU, no cuML, too little memory) are rows with the reason; other failures exit 1.
    """
    from rich.console import Console

    from gpuseg.benchmark import (
        CHILD_TIMEOUT_S,
        DEFAULT_SIZES,
        QUICK_SIZES,
        errors,
        run_suite,
        suite,
        table,
        write_outputs,
    )

    try:
        size_list = tuple(float(v) for v in sizes.split(",")) if sizes else (QUICK_SIZES if quick else DEFAULT_SIZES)
        if any(not v > 0 for v in size_list):
            raise ValueError
    except ValueError:
        _err(f"--sizes {sizes!r}: give positive megapixel counts separated by commas, e.g. 0.25,1,2")
        raise typer.Exit(2) from None
    if out.exists() and not out.is_dir():
        _err(f"--out {str(out)!r} is a file: give a folder (it is created if missing)")
        raise typer.Exit(2)
    console = Console()
    if pipeline:
        if quick or engine or case or repeat or timeout or (sizes and len(size_list) > 1):
            _err("--pipeline takes --images, one --sizes value, --device and --out (not --quick, --engine, --case, "
                 "--repeat, --timeout or several sizes)")  # fmt: skip
            raise typer.Exit(2)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _err(f"--out {str(out)!r}: cannot create it ({exc.strerror or exc}); give a writable folder")
            raise typer.Exit(1) from None
        _bench_pipeline(console, images, size_list[0] if sizes else 1.2, device.value, out)
        return
    engines = [e.value for e in engine] if engine else None
    cases = suite(size_list, quick=quick)
    if case:
        cases = [c for c in cases if any(text.lower() in c.name.lower() for text in case)]
        if not cases:
            names = "; ".join(c.name for c in suite(size_list, quick=quick))
            _err(f"--case {' '.join(map(repr, case))}: no case name contains it; the cases: {names}")
            raise typer.Exit(2)

    def show(row) -> None:
        done = f"{'error' if row.error else 'not run'}: {row.reason}" if row.reason else f"{row.median_s:.3f} s"
        console.print(f"{row.case} | {row.engine} on {row.device}: {done}", style="dim", markup=False)

    repeat = repeat or (3 if quick else 5)
    document = run_suite(
        cases, engines=engines, device=device.value, repeat=repeat, timeout=timeout or CHILD_TIMEOUT_S, progress=show
    )
    console.print(table(document))
    try:
        written = write_outputs(document, out)
    except OSError as exc:
        _err(f"--out {str(out)!r}: cannot write the results ({exc.strerror or exc}); give a writable folder")
        raise typer.Exit(1) from None
    for path in written:
        console.print(f"wrote {path}")
    if out / "bench.png" not in written:
        console.print("bench.png not written: no photo case ran (see the reasons above)")
    failed = errors(document)
    for line in failed:
        _err(line)
    if failed:
        _err(f"{len(failed)} of {len(document['rows'])} runs failed (results above and in {out})")
        raise typer.Exit(1)


def _bench_pipeline(console, images: int, megapixels: float, device: str, out: Path) -> None:
    from gpuseg import pipeline_bench

    with _command_frame(), _first_run_notice():
        result = pipeline_bench.run(images, megapixels, device)
    r = result
    console.print(
        f"{r['images']} JPEGs of {r['megapixels_each']:.2f} MP on {device}: pipeline {r['pipeline_s']:.2f} s "
        f"({r['pipeline_images_per_s']:.2f} images/s, {r['pipeline_megapixels_per_s']:.2f} MP/s); one at a time "
        f"{r['one_at_a_time_s']:.2f} s ({r['one_at_a_time_images_per_s']:.2f} images/s); cluster stages "
        f"{r['sum_of_cluster_stages_s']:.2f} s (pipeline/cluster {r['pipeline_over_cluster_stages']:.2f}x); "
        f"--skip-existing rerun {r['skip_existing_rerun_s']:.3f} s; same labels: {r['identical_labels']}",
        markup=False,
    )
    try:
        console.print(f"wrote {pipeline_bench.write(result, out)}")
    except OSError as exc:
        _err(f"--out {str(out)!r}: cannot write the results ({exc.strerror or exc}); give a writable folder")
        raise typer.Exit(1) from None
    if not result["identical_labels"] or result["failed"]:
        _err("the pipeline's labels differ from one image at a time, or images failed")
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")] = 8000,
    device: DeviceArg = DeviceOpt.auto,
    token_file: Annotated[
        Optional[Path],
        typer.Option("--token-file", help="File holding a token: every route but /v1/health then needs it."),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest request body.")] = 64,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=1, help="Largest image, checked from its header before decoding.")
    ] = 2**28,
    queue: Annotated[int, typer.Option("--queue", min=1, help="Jobs that may wait for the device; more get 503.")] = 16,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds a request may wait and run before a 504.")
    ] = 300,
) -> None:
    """Serve segmentation over HTTP: POST /v1/segment, /v1/cluster; GET /v1/health, /v1/ready, /v1/info, /metrics.

    The schema is at /docs and /openapi.json. SIGTERM or Ctrl-C lets the requests in flight finish, then exits.
    """
    try:
        import uvicorn

        from gpuseg.serve import Settings, create_app
    except ImportError as exc:
        _err(f"gpuseg serve needs {exc.name}: pip install 'gpuseg[serve]'")
        raise typer.Exit(1) from None
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            _err(f"--token-file {str(token_file)!r}: cannot read it ({getattr(exc, 'strerror', None) or exc})")
            raise typer.Exit(2) from None
        if not token:
            _err(f"--token-file {str(token_file)!r} is empty; write the token in it")
            raise typer.Exit(2)
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        typer.echo(f"warning: listening on {host} without --token-file: anyone who reaches it can use it", err=True)
    settings = dict(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels, queue_size=queue)
    with _command_frame():
        web_app = create_app(Settings(device=device.value, token=token, timeout_s=timeout, **settings))
    uvicorn.run(web_app, host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_GRACE_S, log_level="info")


SHUTDOWN_GRACE_S = 30
"""Seconds ``gpuseg serve`` gives the requests in flight to finish on SIGTERM or Ctrl-C."""


LIBRARIES = (
    "numpy",
    "numba",
    "numba-cuda",
    "opencv-python-headless",
    "scikit-learn",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "cuml-cu12",
    "cuml-cu13",
    "cuml",
)


@app.command()
def info() -> None:
    """Versions, CUDA devices seen (or why none), and the engines available here."""
    from importlib import metadata

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from gpuseg.device import cpu_name, gpu_status
    from gpuseg.engines import ENGINES

    console = Console()
    console.print(f"gpuseg {__version__}, Python {sys.version.split()[0]}")
    versions = []
    for dist in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    console.print("libraries: " + ", ".join(versions))
    console.print(f"cpu: {cpu_name()}")
    gpu = gpu_status()
    if gpu.usable:
        console.print(f"gpu: {gpu.name}, {gpu.total_memory / 2**30:.1f} GiB ({gpu.free_memory / 2**30:.1f} GiB free)")
    else:
        console.print(f"gpu: none ({escape(gpu.reason or '')})")
    table = Table("engine", "devices", "usable here", "what it is")
    for spec in ENGINES.values():
        missing = spec.why_missing()
        kinds = [k for k in spec.runners if k == "cpu" or gpu.usable]
        available = f"no: {missing}" if missing else (", ".join(kinds) if kinds else "no: needs a GPU")
        table.add_row(spec.name, ", ".join(spec.runners), escape(available), spec.summary)
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
