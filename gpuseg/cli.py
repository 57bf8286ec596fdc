"""The `gpuseg` command line: thin commands over the Python API.

Heavy libraries (numba, scikit-learn, CuPy, cuML, OpenCV) are imported inside the commands, so that
`gpuseg --help` answers at once.
"""

from __future__ import annotations

import contextlib
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gpuseg import __version__
from gpuseg.device import DEVICES
from gpuseg.engines import ENGINE_NAMES
from gpuseg.features import ALPHA_MODES, COLOR_SPACES
from gpuseg.pipeline import DEFAULT_COLOR, DEFAULT_EPS, DEFAULT_MIN_SAMPLES, DEFAULT_XY_SCALE

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
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpuseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    """Segment images by clustering their pixels with exact DBSCAN, on CUDA GPUs and on CPUs."""


ColorArg = Annotated[Color, typer.Option("--color", help="Colour features.")]
AlphaArg = Annotated[Alpha, typer.Option("--alpha", help="What to do with an alpha channel.")]
XyScaleArg = Annotated[float, typer.Option("--xy-scale", help="Position features x*s, y*s; 0 for colour only.")]
EpsOpt = Annotated[float, typer.Option("--eps", help="DBSCAN radius in feature units (colours in [0, 1]).")]
MinSamplesOpt = Annotated[int, typer.Option("--min-samples", help="Neighbourhood weight that makes a core sample.")]
DeviceArg = Annotated[DeviceOpt, typer.Option("--device", help="auto: a CUDA GPU when there is one.")]
EngineArg = Annotated[EngineOpt, typer.Option("--engine", help="auto: gpuseg's exact engine for the input.")]


@app.command()
def segment(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, TIFF, BMP, WebP, ...).")],
    eps: EpsOpt = DEFAULT_EPS,
    min_samples: MinSamplesOpt = DEFAULT_MIN_SAMPLES,
    color: ColorArg = Color(DEFAULT_COLOR),
    alpha: AlphaArg = Alpha.ignore,
    xy_scale: XyScaleArg = DEFAULT_XY_SCALE,
    device: DeviceArg = DeviceOpt.auto,
    engine: EngineArg = EngineOpt.auto,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out-dir", help="Where outputs go (default: beside each image).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document with every report.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Refuse larger images.")] = 2**28,
    save: Annotated[
        str, typer.Option("--save", help="Pictures to write: any of overlay,mean,boundaries,noise (or none).")
    ] = "overlay",
    explain: Annotated[
        bool, typer.Option("--explain", help="Also write <stem>.explain.png: input, colour only, + position, noise.")
    ] = False,
    truth: Annotated[
        Optional[Path], typer.Option("--truth", help="Ground-truth label image: adds ARI and VI to the report.")
    ] = None,
) -> None:
    """Segment images: writes <stem>.labels.npy, .labels.png, the pictures asked for and .json per image."""
    from rich.console import Console
    from rich.progress import Progress

    from gpuseg.errors import GpusegError
    from gpuseg.pictures import PICTURES
    from gpuseg.pipeline import explain_panel, save_outputs
    from gpuseg.pipeline import segment as run_segment

    pictures = tuple(p for p in save.split(",") if p and p != "none")
    unknown = [p for p in pictures if p not in PICTURES]
    if unknown:
        _err(f"--save {save!r}: {', '.join(unknown)} not among {', '.join(PICTURES)} (or none)")
        raise typer.Exit(2)
    if truth is not None and len(images) > 1:
        _err("--truth compares one image with its ground truth; give one image")
        raise typer.Exit(2)

    reports, failures = [], []
    scale = xy_scale if xy_scale > 0 else None
    with Progress(console=Console(stderr=True), disable=len(images) < 2, transient=True) as progress:
        task = progress.add_task("segmenting", total=len(images))
        for path in images:
            try:
                result = run_segment(
                    path,
                    eps=eps,
                    min_samples=min_samples,
                    color=color.value,
                    alpha=alpha.value,
                    xy_scale=scale,
                    device=device.value,
                    engine=engine.value,
                    max_pixels=max_pixels,
                    truth=truth,
                )
                stem = (out_dir or path.parent) / path.stem
                panel = explain_panel(result, device=device.value, engine=engine.value) if explain else None
                written = save_outputs(result, stem, overwrite=overwrite, pictures=pictures, explain=panel)
                result.report["outputs"] = [str(p) for p in written]
                reports.append(result.report)
                if not as_json:
                    progress.console.print(_report_table(result.report))
            except (GpusegError, ValueError, OSError) as exc:
                failures.append({"source": str(path), "error": str(exc)})
                _err(str(exc))
            progress.advance(task)
    if as_json:
        typer.echo(json.dumps({"reports": reports, "failures": failures}, indent=2))
    if failures:
        raise typer.Exit(1)


def _report_table(report: dict):
    from rich.markup import escape
    from rich.table import Table

    from gpuseg.report import format_seconds

    table = Table(title=escape(str(report["source"])), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    h, w = report["image_shape"][:2]
    table.add_row("image", f"{w} x {h}, {report['n_samples']:,} samples, features {', '.join(report['features'])}")
    table.add_row("parameters", f"eps {report['eps']}, min_samples {report['min_samples']}")
    device = f"{report['device']} ({report['device_name']})"
    if report["fallback_reason"]:
        device += f" - CPU because {report['fallback_reason']}"
    table.add_row("device", escape(device))
    table.add_row("engine", escape(report["engine"] + (f" - {report['engine_note']}" if report["engine_note"] else "")))
    table.add_row("clusters", f"{report['n_clusters']}, noise {report['noise_fraction']:.1%}")
    if report["quality"]:
        q = report["quality"]
        ari, vi = q["adjusted_rand_index"], q["variation_of_information"]
        table.add_row("vs truth", f"adjusted Rand {ari:.3f}, variation of information {vi:.3f}")
    stages = ", ".join(f"{k} {format_seconds(v)}" for k, v in report["timings_s"].items() if v > 0 or k == "total")
    table.add_row("time", stages)
    return table


@app.command()
def suggest(
    image: Annotated[Path, typer.Argument(help="The image to segment.")],
    min_samples: MinSamplesOpt = DEFAULT_MIN_SAMPLES,
    color: ColorArg = Color(DEFAULT_COLOR),
    alpha: AlphaArg = Alpha.ignore,
    xy_scale: XyScaleArg = DEFAULT_XY_SCALE,
    plot: Annotated[
        Optional[Path], typer.Option("--plot", help="Where the k-distance plot goes (default <stem>.kdist.png).")
    ] = None,
) -> None:
    """Suggest eps for an image: the knee of its k-distance curve (k = min samples), with a plot."""
    from gpuseg.errors import GpusegError
    from gpuseg.io import load_image
    from gpuseg.suggest import plot_k_distances, suggest_eps

    scale = xy_scale if xy_scale > 0 else None
    try:
        s = suggest_eps(
            load_image(image), min_samples=min_samples, color=color.value, alpha=alpha.value, xy_scale=scale
        )
        plot = plot or image.with_name(image.stem + ".kdist.png")
        plot_k_distances(s, plot)
    except (GpusegError, ValueError, OSError) as exc:
        _err(str(exc))
        raise typer.Exit(1) from None
    typer.echo(
        f"suggested eps: {s.eps:.4g} (knee of the {min_samples}-distance curve of {len(s.k_distances):,} pixels)"
    )
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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing labels file.")] = False,
) -> None:
    """DBSCAN on a feature array; labels (-1 noise) to .npy or .csv."""
    import numpy as np

    from gpuseg.cluster import cluster_features
    from gpuseg.errors import GpusegError
    from gpuseg.features import points_features
    from gpuseg.io import atomic_write, read_points, save_npy

    out = out or points.with_name(points.stem + ".labels.npy")
    try:
        if out.suffix not in (".npy", ".csv"):
            raise ValueError(f"--out {out}: the labels file must end in .npy or .csv")
        if out.exists() and not overwrite:
            raise GpusegError(f"{out}: exists; pass --overwrite to replace it")
        X = read_points(points)
        run = cluster_features(
            points_features(X), eps=eps, min_samples=min_samples, device=device.value, engine=engine.value
        )
        labels = run.labels.astype(np.int32)
        if out.suffix == ".npy":
            save_npy(out, labels, overwrite=overwrite)
        else:
            atomic_write(out, lambda f: np.savetxt(f, labels, fmt="%d"), overwrite=overwrite)
    except (GpusegError, ValueError, OSError) as exc:
        _err(str(exc))
        raise typer.Exit(1) from None
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    typer.echo(
        f"{points}: {labels.size:,} samples, {n_clusters} clusters, noise {(labels < 0).mean():.1%}, "
        f"engine {run.engine} on {run.device.kind} -> {out}"
    )


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="The seed's examples and 0.25 MP photos only.")] = False,
    device: DeviceArg = DeviceOpt.auto,
    engine: Annotated[
        Optional[list[EngineOpt]], typer.Option("--engine", help="Only these engines (repeat the option).")
    ] = None,
    sizes: Annotated[
        Optional[str], typer.Option("--sizes", help="Photo sizes in megapixels, e.g. 0.25,1,2,12,50.")
    ] = None,
    repeat: Annotated[
        Optional[int], typer.Option("--repeat", min=1, help="Timed runs per engine, median reported [5; 3 quick].")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.json, bench.csv and bench.png.")] = Path(
        "gpuseg-bench"
    ),
) -> None:
    """Time every engine on the seed's examples and on photos of growing size, beside scikit-learn."""
    from rich.console import Console

    from gpuseg.benchmark import DEFAULT_SIZES, QUICK_SIZES, run_suite, suite, table, write_outputs

    try:
        size_list = tuple(float(v) for v in sizes.split(",")) if sizes else (QUICK_SIZES if quick else DEFAULT_SIZES)
        if any(v <= 0 for v in size_list):
            raise ValueError
    except ValueError:
        _err(f"--sizes {sizes!r}: give positive megapixel counts separated by commas, e.g. 0.25,1,2")
        raise typer.Exit(2) from None
    console = Console()
    engines = [e.value for e in engine] if engine else None
    cases = suite(size_list, quick=quick)

    def show(row) -> None:
        done = "not run" if row.reason else f"{row.median_s:.3f} s"
        console.print(f"[dim]{row.case} | {row.engine} on {row.device}: {done}[/dim]")

    repeat = repeat or (3 if quick else 5)
    document = run_suite(cases, engines=engines, device=device.value, repeat=repeat, progress=show)
    console.print(table(document))
    for path in write_outputs(document, out):
        console.print(f"wrote {path}")


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
