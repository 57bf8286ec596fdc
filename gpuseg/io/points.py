"""Reading feature rows (``gpuseg cluster``'s input) from .npy and CSV files, checked before they are loaded."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from gpuseg.errors import GpusegError, MemoryLimitError
from gpuseg.io.read import RegularFile


def read_points(path: str | os.PathLike[str]) -> np.ndarray:
    """Feature rows to cluster, from a ``.npy`` array or a ``.csv`` table.

    Parameters
    ----------
    path : str or path-like
        ``.npy``: a 2-D numeric array ``(N, F)``. ``.csv``: one sample per line, its F features separated
        by commas, optionally below one header line (a first line where no field is a number).

    Returns
    -------
    points : ndarray
        ``(N, F)``, the array's own dtype for ``.npy``, float64 for ``.csv``; every value finite.

    Raises
    ------
    GpusegError
        The file is missing, not a regular file, empty, truncated, not 2-D, not numeric, or a CSV row is
        not a number or has another number of columns (the message names the line), or a value is NaN
        or infinite.
    MemoryLimitError
        The array would not fit in the memory available.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise GpusegError(f"{path}: points must be a .npy or .csv file (got {path.suffix or 'no suffix'!r})")
    with RegularFile(path, GpusegError, "array or table of points") as file:
        return _read(file, str(path), suffix == ".npy")


def points_from_bytes(data: bytes | bytearray, *, name: str = "<bytes>") -> np.ndarray:
    """Feature rows from the bytes of a ``.npy`` file (recognised by its magic string) or of a CSV table, with
    the checks and the result of :func:`read_points`; ``name`` starts the error messages.

    Raises
    ------
    GpusegError, MemoryLimitError
        As :func:`read_points`.
    """
    return _read(_BytesFile(data), name, bytes(data[:6]) == b"\x93NUMPY")


class _BytesFile:
    """Bytes in memory with the part of :class:`RegularFile` the readers use."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.file = io.BytesIO(data)
        self.size = len(data)
        self.data = data

    def read_all(self) -> bytes | bytearray:
        return self.data


def _read(file, name: str, npy: bool) -> np.ndarray:
    if file.size == 0:
        raise GpusegError(f"{name}: the file is empty")
    if npy:
        points, row_names = _read_npy(file, name), None
    else:
        points, row_names = _read_csv(file, name)
    _check_finite(points, name, row_names)
    return points


def _read_npy(file, path: str) -> np.ndarray:
    """The array of a .npy file, its header checked against the file's size and the memory first."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(file.file)
        readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
        if version not in readers:
            raise GpusegError(f"{path}: .npy format version {version} is not read; save the array with numpy.save")
        shape, _, dtype = readers[version](file.file)
    except (ValueError, OSError) as exc:
        raise GpusegError(f"{path}: not a readable .npy file ({exc})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise GpusegError(f"{path}: holds {dtype} values; gpuseg clusters numbers: save X.astype(float) instead")
    if len(shape) != 2:
        raise GpusegError(
            f"{path}: holds an array of shape {shape}; gpuseg clusters an (N, F) table of N samples by F "
            "features: reshape it (X.reshape(-1, 1) for one feature per sample) and save it again"
        )
    if 0 in shape:
        raise GpusegError(f"{path}: holds an empty array of shape {shape}; there is nothing to cluster")
    values = int(np.prod(shape, dtype=object))
    need = values * dtype.itemsize
    have = file.size - file.file.tell()
    if need > have:
        raise GpusegError(
            f"{path}: its header claims an array of shape {shape} ({dtype}), {need:,} bytes, but only {have:,} "
            "bytes follow it: the file is truncated or damaged; save the array again with numpy.save"
        )
    _check_memory(need + 8 * values, f"an array of shape {shape} ({dtype}) and its float64 copy", path)
    try:
        file.file.seek(0)
        return npy.read_array(file.file, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise GpusegError(f"{path}: not a readable .npy file ({exc})") from None


def _read_csv(file, path: str) -> tuple[np.ndarray, list[int]]:
    """(points, 1-based line number in the file of each row)."""
    _check_memory(8 * file.size, f"the text and numbers of a {file.size:,}-byte CSV file", path)
    raw = file.read_all()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GpusegError(f"{path}: not a text file (byte {exc.start:,} is not UTF-8 text)") from None
    rows = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise GpusegError(f"{path}: has no rows; write one sample per line, its features separated by commas")
    if not any(_is_number(field) for field in rows[0][1].split(",")):  # a header line
        rows = rows[1:]
        if not rows:
            raise GpusegError(f"{path}: has a header line and no data rows below it")
    try:
        points = np.loadtxt([line for _, line in rows], delimiter=",", ndmin=2, dtype=np.float64, comments=None)
    except ValueError as exc:
        raise GpusegError(f"{path}: {_csv_problem(rows) or exc}") from None
    return points, [number for number, _ in rows]


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _csv_problem(rows: list[tuple[int, str]]) -> str | None:
    """The first row that is not numbers separated by commas, or has another number of columns."""
    width, width_line = None, None
    for number, line in rows:
        fields = line.split(",")
        for column, field in enumerate(fields, 1):
            if not _is_number(field):
                what = f"{field.strip()!r} is not a number" if field.strip() else "the field is empty"
                return f"line {number}, column {column}: {what} (features are numbers separated by commas)"
        if width is None:
            width, width_line = len(fields), number
        elif len(fields) != width:
            return (
                f"line {number} has {len(fields)} columns where line {width_line} has {width}; every row needs "
                "the same number of features"
            )
    return None


def _check_finite(points: np.ndarray, path: str, line_numbers: list[int] | None) -> None:
    if points.dtype.kind != "f":
        return
    bad = ~np.isfinite(points)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        where = f"line {line_numbers[row]}" if line_numbers else f"row {row} (from 0)"
        raise GpusegError(
            f"{path}: {where}, column {column + 1}: {points[row, column]} is not a finite number; DBSCAN needs "
            f"finite features: remove or fill in the {int(bad.any(axis=1).sum()):,} rows that have NaN or inf"
        )


def _check_memory(need: int, what: str, path: str) -> None:
    from gpuseg._core.memory import available_memory

    have = available_memory()
    if need > have:
        raise MemoryLimitError(
            f"{path}: {what} need {need:,} bytes and {have:,} bytes of memory are available; cluster a subset "
            "of the rows, or use a machine with more memory"
        )
