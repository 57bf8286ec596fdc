"""The ``gpuseg`` command line: one Typer app, a module per command.

Heavy libraries (numba, scikit-learn, CuPy, cuML, OpenCV) are imported inside the commands, so that
``gpuseg --help`` answers at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gpuseg._core.cache import use_user_cache
from gpuseg._core.version import __version__
from gpuseg.cli.bench import bench
from gpuseg.cli.cluster import cluster
from gpuseg.cli.info import info
from gpuseg.cli.segment import segment
from gpuseg.cli.serve import serve
from gpuseg.cli.suggest import suggest

app = typer.Typer(
    name="gpuseg",
    help="Segment images by clustering their pixels with exact DBSCAN, on CUDA GPUs and on CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (segment, suggest, cluster, bench, serve, info):
    app.command()(command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpuseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, metavar="", help="Print the version."),
    ] = None,
) -> None:
    """Segment images by clustering their pixels with exact DBSCAN, on CUDA GPUs and on CPUs."""
    use_user_cache()  # compiled kernels are cached where this user can write, whatever the install


if __name__ == "__main__":  # pragma: no cover
    app()
