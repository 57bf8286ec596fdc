"""Reading feature rows (``gpuseg cluster``'s input) from .npy and CSV files, checked before they are loaded."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from gpuseg.errors import GpusegError, MemoryLimitError
from gpuseg.io import open_regular_file


def read_points(path: str | os.PathLike[str]) -> np.ndarray:
    """The ``(N, F)`` rows of a ``.npy`` array or a numeric CSV table (one optional header line).

    A ``.npy`` file's header is read first: a shape that its bytes cannot hold, or that does not fit in
    memory, is refused before anything is allocated. CSV errors name the line (1-based, as an editor shows it).

    Raises
    ------
    GpusegError
        Missing or not a regular file, not .npy or .csv, not a 2-D numeric table, damaged, NaN or infinite
        values, or too large for the memory available.
    """
    path = Path(path)
    if path.suffix not in (".npy", ".csv"):
        raise GpusegError(f"{path}: points must be a .npy or .csv file")
    with open_regular_file(path, "array or table of points") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise GpusegError(f"{path}: the file is empty")
        rows = (
            _read_npy(f, size, path) if path.suffix == ".npy" else _read_csv(f.read().decode("utf-8", "replace"), path)
        )
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise GpusegError(f"{path}: holds an array of shape {rows.shape}; gpuseg clusters an (N, F) table of rows")
    return rows


def _read_npy(f, size: int, path: Path) -> np.ndarray:
    from gpuseg.memory import available_memory

    try:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (
            np.lib.format.read_array_header_1_0(f) if version == (1, 0) else np.lib.format.read_array_header_2_0(f)
        )
    except (ValueError, OSError, SyntaxError) as exc:
        raise GpusegError(f"{path}: not a .npy file, or a damaged one ({exc})") from None
    if dtype.kind not in "biuf":
        raise GpusegError(f"{path}: holds {dtype} values; gpuseg clusters numbers (int or float)")
    if len(shape) != 2:
        raise GpusegError(f"{path}: holds an array of shape {shape}; gpuseg clusters an (N, F) table of rows")
    need = math.prod(shape) * dtype.itemsize
    held = size - f.tell()
    if need > held:
        raise GpusegError(
            f"{path}: its header says shape {shape} ({need:,} bytes) but the file holds {held:,} bytes after it: "
            "the file is truncated or damaged"
        )
    have = available_memory()
    if need * 2 > have:  # the rows and their float64 copy
        raise MemoryLimitError(
            f"{path}: {shape[0]:,} rows of {shape[1]} features need about {2 * need / 2**30:.1f} GiB and "
            f"{have / 2**30:.1f} GiB is available; cluster fewer rows"
        )
    f.seek(0)
    return np.load(f, allow_pickle=False)


def _read_csv(text: str, path: Path) -> np.ndarray:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if lines and not _is_numeric_row(lines[0][1]):
        lines = lines[1:]  # a header line
    if not lines:
        raise GpusegError(f"{path}: has no rows of numbers")
    width = None
    rows = []
    for number, line in lines:
        cells = line.split(",")
        try:
            row = [float(cell) for cell in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise GpusegError(f"{path}: line {number}: {bad.strip()!r} is not a number") from None
        if width is None:
            width, first = len(row), number
        elif len(row) != width:
            raise GpusegError(f"{path}: line {number} has {len(row)} values, line {first} has {width}")
        if not all(math.isfinite(v) for v in row):
            raise GpusegError(f"{path}: line {number} has NaN or infinite values; DBSCAN needs finite features")
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_numeric_row(line: str) -> bool:
    return all(_is_number(cell) for cell in line.split(","))
