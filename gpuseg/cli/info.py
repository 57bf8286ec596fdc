"""``gpuseg info``: versions, CUDA devices and the engines usable here."""

from __future__ import annotations

import contextlib
import sys

from gpuseg._core.version import __version__

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


def info() -> None:
    """Versions, CUDA devices seen (or why none), and the engines available here."""
    from importlib import metadata

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from gpuseg._core.device import cpu_name, gpu_status
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
    if gpu.usable and gpu.total_memory is not None and gpu.free_memory is not None:
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
