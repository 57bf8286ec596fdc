"""``gpuseg suggest``: eps for an image, from its k-distance curve and a target noise fraction."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gpuseg.cli.frame import command_frame, first_run_notice
from gpuseg.cli.options import flag, option, with_options
from gpuseg.errors import OutputExistsError
from gpuseg.params import DEFAULT_TARGET_NOISE, GIANT_CLUSTER


@with_options(
    "min_samples", "color", "alpha", "xy_scale",
    option("target_noise", default=DEFAULT_TARGET_NOISE, help="Noise fraction to find eps for, beside the knee."),
    "device",
)  # fmt: skip
def suggest(
    image: Annotated[Path, typer.Argument(help="The image to suggest eps for.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Where the k-distance plot goes (default <stem>.kdist.png).")
    ] = None,
    overwrite: Annotated[bool, flag("--overwrite", "Replace an existing plot.")] = False,
    **values: Any,
) -> None:
    """Suggest eps for an image: the knee of its k-distance curve (k = min samples), with a plot, and the eps
    for a target noise fraction (found by clustering the image a few times); says which it recommends."""
    from gpuseg.io.read import load_image
    from gpuseg.tuning.suggest import KNEE_SLACK, plot_k_distances, suggest_eps

    plot = plot or image.with_name(image.stem + ".kdist.png")
    with command_frame(), first_run_notice():
        if plot.exists() and not overwrite:
            raise OutputExistsError(f"{plot}: exists; pass --overwrite to replace it, or choose --plot")
        s = suggest_eps(load_image(image), **values)
        plot_k_distances(s, plot, overwrite=overwrite)

    def result(noise: float | None, largest: float | None) -> str:
        return f"{noise or 0:.1%} noise, largest cluster {largest or 0:.0%} of the pixels"

    min_samples, scale = values["min_samples"], values["xy_scale"]
    knee = f"knee of the {min_samples}-distance curve of {len(s.k_distances):,} pixels"
    typer.echo(f"eps {s.knee_eps:.4g}: {knee}: {result(s.knee_noise, s.knee_largest_cluster)}")
    typer.echo(
        f"eps {s.target_eps:.4g}: for {s.target_noise:.0%} noise ({s.search_runs} runs): "
        f"{result(s.target_noise_fraction, s.target_largest_cluster)}"
    )
    if s.recommended == "knee":
        why = f"its noise is at most the target + {KNEE_SLACK:.0%} and no cluster holds {GIANT_CLUSTER:.0%}"
    else:
        reasons = []
        knee_noise, knee_largest = s.knee_noise or 0.0, s.knee_largest_cluster or 0.0  # set with a target
        if knee_noise > (s.target_noise or 0.0) + KNEE_SLACK:
            reasons.append(f"the knee leaves {knee_noise:.1%} noise, more than the target + {KNEE_SLACK:.0%}")
        if knee_largest > GIANT_CLUSTER:
            reasons.append(f"at the knee one cluster holds {knee_largest:.1%} of the pixels")
        why = "; ".join(reasons)
    typer.echo(f"recommended: eps {s.eps:.4g} ({'the knee' if s.recommended == 'knee' else 'the target'}: {why})")
    for warning in s.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    if s.radius_px is not None:
        typer.echo(f"with xy_scale {scale:g}, two pixels can be neighbours up to {s.radius_px} pixels apart")
    typer.echo(f"plot: {plot}")
    command = (
        f"gpuseg segment {image} --eps {s.eps:.4g} --min-samples {min_samples} --color {values['color']} "
        f"--alpha {values['alpha']} --xy-scale {scale or 0:g}"
    )
    typer.echo(f"run: {command}")
