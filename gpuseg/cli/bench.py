"""``gpuseg bench``: every engine beside scikit-learn, or the streaming pipeline, timed on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gpuseg.cli.frame import command_frame, first_run_notice, say_error
from gpuseg.cli.options import flag, option, with_options
from gpuseg.params import DeviceName


@with_options("device", option("engine", help="Only these engines (repeat the option).", multiple=True))
def bench(
    quick: Annotated[
        bool,
        flag("--quick", "Only the 750 blobs, the RGBA logo and the photo at 0.25 MP (or at --sizes)."),
    ] = False,
    sizes: Annotated[
        str | None, typer.Option("--sizes", help="Photo sizes in megapixels, e.g. 0.25,1,2,12,50.")
    ] = None,
    case: Annotated[
        list[str] | None,
        typer.Option("--case", help="Only the cases whose name contains this text, e.g. '40k' (repeat the option)."),
    ] = None,
    repeat: Annotated[
        int | None,
        typer.Option("--repeat", min=1, help="Timed runs per engine, median reported (default 5; 3 with --quick)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=1,
            help="Seconds after which one engine's run on a case is stopped, an error (default 1800).",
        ),
    ] = None,
    pipeline: Annotated[
        bool,
        flag(
            "--pipeline",
            "Instead: segment a generated folder of JPEG photos (--images of --sizes MP, default 10 of 1.2) with "
            "the streaming pipeline, beside one image at a time; writes pipeline.json.",
        ),
    ] = False,
    images: Annotated[int, typer.Option("--images", min=1, help="Images in the --pipeline folder.")] = 10,
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.json, bench.csv and bench.png.")] = Path(
        "gpuseg-bench"
    ),
    **values: Any,
) -> None:
    """Time every engine beside scikit-learn on point sets, generated images and a photo of growing size.

    Cases: make_blobs points (750; 1M in 2-D, 3-D; 40k in 6-D, 8-D), a generated RGBA logo (500x500) and shapes
    image (1411x1411), and the rows of pixel_features() given to dbscan().

    Photo: Grace Hopper's portrait from matplotlib's sample data, cropped or mirror-tiled to each of --sizes.

    Runs this machine cannot do (no GPU, no cuML, too little memory) are rows with the reason; other failures exit 1.
    """
    from rich.console import Console

    from gpuseg.benchmarks.suite import (
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
        say_error(f"--sizes {sizes!r}: give positive megapixel counts separated by commas, e.g. 0.25,1,2")
        raise typer.Exit(2) from None
    if out.exists() and not out.is_dir():
        say_error(f"--out {str(out)!r} is a file: give a folder (it is created if missing)")
        raise typer.Exit(2)
    device, engine = values["device"], values["engine"]
    console = Console()
    if pipeline:
        if quick or engine or case or repeat or timeout or (sizes and len(size_list) > 1):
            say_error(
                "--pipeline takes --images, one --sizes value, --device and --out (not --quick, --engine, --case, "
                "--repeat, --timeout or several sizes)"
            )
            raise typer.Exit(2)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            say_error(f"--out {str(out)!r}: cannot create it ({exc.strerror or exc}); give a writable folder")
            raise typer.Exit(1) from None
        _bench_pipeline(console, images, size_list[0] if sizes else 1.2, device, out)
        return
    engines = list(engine) if engine else None
    cases = suite(size_list, quick=quick)
    if case:
        cases = [c for c in cases if any(text.lower() in c.name.lower() for text in case)]
        if not cases:
            names = "; ".join(c.name for c in suite(size_list, quick=quick))
            say_error(f"--case {' '.join(map(repr, case))}: no case name contains it; the cases: {names}")
            raise typer.Exit(2)

    def show(row) -> None:
        done = f"{'error' if row.error else 'not run'}: {row.reason}" if row.reason else f"{row.median_s:.3f} s"
        console.print(f"{row.case} | {row.engine} on {row.device}: {done}", style="dim", markup=False)

    repeat = repeat or (3 if quick else 5)
    document = run_suite(
        cases, engines=engines, device=device, repeat=repeat, timeout=timeout or CHILD_TIMEOUT_S, progress=show
    )
    console.print(table(document))
    try:
        written = write_outputs(document, out)
    except OSError as exc:
        say_error(f"--out {str(out)!r}: cannot write the results ({exc.strerror or exc}); give a writable folder")
        raise typer.Exit(1) from None
    for path in written:
        console.print(f"wrote {path}")
    if out / "bench.png" not in written:
        console.print("bench.png not written: no photo case ran (see the reasons above)")
    failed = errors(document)
    for line in failed:
        say_error(line)
    if failed:
        say_error(f"{len(failed)} of {len(document['rows'])} runs failed (results above and in {out})")
        raise typer.Exit(1)


def _bench_pipeline(console, images: int, megapixels: float, device: DeviceName, out: Path) -> None:
    from gpuseg.benchmarks import pipeline as pipeline_bench

    with command_frame(), first_run_notice():
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
        say_error(f"--out {str(out)!r}: cannot write the results ({exc.strerror or exc}); give a writable folder")
        raise typer.Exit(1) from None
    if not result["identical_labels"] or result["failed"]:
        say_error("the pipeline's labels differ from one image at a time, or images failed")
        raise typer.Exit(1)
