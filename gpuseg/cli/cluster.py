"""``gpuseg cluster``: DBSCAN on feature rows from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gpuseg.cli.frame import command_frame, first_run_notice
from gpuseg.cli.options import flag, option, with_options
from gpuseg.errors import OutputExistsError
from gpuseg.params import distance_or_refuse


@with_options(
    option("eps", default=..., accept=lambda eps: distance_or_refuse("eps", eps)),
    option("min_samples", default=...),
    "device",
    "engine",
)
def cluster(
    points: Annotated[Path, typer.Argument(help="Feature rows: .npy (N, F) or .csv (one row per sample).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Labels file, .npy or .csv (default <stem>.labels.npy).")
    ] = None,
    overwrite: Annotated[bool, flag("--overwrite", "Replace an existing labels file.")] = (False),
    **values: Any,
) -> None:
    """DBSCAN on a feature array; labels (-1 noise) to .npy or .csv."""
    import numpy as np

    from gpuseg.engines.run import cluster_features
    from gpuseg.features import points_features
    from gpuseg.io.points import read_points
    from gpuseg.io.write import atomic_write, save_npy

    out = out or points.with_name(points.stem + ".labels.npy")
    with command_frame(), first_run_notice():
        if out.suffix not in (".npy", ".csv"):
            raise ValueError(f"--out {out}: the labels file must end in .npy or .csv")
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out}: exists; pass --overwrite to replace it")
        run = cluster_features(points_features(read_points(points)), **values)
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
