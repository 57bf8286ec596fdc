"""Reading images (header first, bounded, regular files only) and points; writing outputs atomically."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg.errors import GpusegError, ImageError, MemoryLimitError, OutputExistsError
from gpuseg.headers import BytesSource, HeaderError, ImageHeader, parse_header

DEFAULT_MAX_PIXELS = 2**28
"""Largest image (width * height) :func:`load_image` accepts unless told otherwise."""

MAX_BYTES_PER_PIXEL = 32
"""No image encoding takes more than this per pixel (four float64 channels, uncompressed)."""

FILE_SLACK_BYTES = 2**28
"""Room beyond the pixels for metadata and trailing data (EXIF, ICC profiles, a motion photo's video)."""

__all__ = ["DEFAULT_MAX_PIXELS", "ImageHeader", "decode_image", "load_image", "read_header", "read_points"]


def read_header(path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview) -> ImageHeader:
    """What an image says about itself (format, size, channels, bytes per channel), without decoding it.

    Reads at most ``gpuseg.headers.HEADER_READ_LIMIT`` bytes at known offsets, whatever the file's size.

    Parameters
    ----------
    path_or_bytes : str, path-like or bytes-like
        An image file (a regular file; FIFOs, devices and directories are refused) or its bytes.

    Returns
    -------
    header : ImageHeader
        ``height``, ``width``, ``channels`` (1, 3 or 4) and ``itemsize`` as :func:`load_image` will return
        the image; ``pixels`` and ``decoded_bytes`` predict its size before it is loaded.

    Raises
    ------
    ImageError
        The file is missing, not a regular file, unreadable, empty, not in a format gpuseg reads, or its
        header is truncated or inconsistent.
    """
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return _header(BytesSource(path_or_bytes), "<bytes>")
    with _RegularFile(path_or_bytes, ImageError) as file:
        return _header(file, file.name)


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file with OpenCV, in RGB(A) channel order and its own dtype.

    The header is read and checked first: a file larger than any image of ``max_pixels`` pixels, or
    whose header claims more pixels, is refused before anything is decoded.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, TIFF, BMP, WebP, PBM/PGM/PPM/PAM/PFM, Radiance HDR, Sun raster, GIF, JPEG 2000 or
        AVIF file: 8- or 16-bit, grey, RGB or RGBA.
    max_pixels : int, optional
        Refuse images with more pixels than this (default ``2**28``).

    Returns
    -------
    image : ndarray
        ``(H, W)`` for grey images, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, dtype uint8, uint16 or float32.
        JPEG EXIF orientation is applied.

    Raises
    ------
    ImageError
        The file is missing, not a regular file (a directory, FIFO, device...), unreadable, empty, not an
        image gpuseg reads, truncated or damaged, or larger than ``max_pixels``.
    ValueError
        ``max_pixels`` is not a positive integer.
    """
    _check_max_pixels(max_pixels)
    with _RegularFile(path, ImageError) as file:
        limit = MAX_BYTES_PER_PIXEL * max_pixels + FILE_SLACK_BYTES
        if file.size > limit:
            raise ImageError(
                f"{file.name}: {file.size:,} bytes is more than any image of at most {max_pixels:,} pixels takes "
                f"({limit:,} bytes); if it is an image, raise max_pixels (--max-pixels on the command line)"
            )
        _check_pixels(_header(file, file.name).pixels, max_pixels, file.name)
        data = file.read_all()
    return decode_image(data, name=file.name, max_pixels=max_pixels)


def decode_image(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image held in memory; the same rules and result as :func:`load_image`."""
    import cv2

    _check_max_pixels(max_pixels)
    header = _header(BytesSource(data), name)
    _check_pixels(header.pixels, max_pixels, name)
    problem = _integrity_problem(data, header.format)
    if problem:
        raise ImageError(f"{name}: {problem}")
    # IMREAD_UNCHANGED keeps alpha and 16 bits but ignores EXIF orientation; JPEG has no alpha, so it is
    # decoded with flags that keep depth and colour and apply the orientation.
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if header.format == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(f"{name}: OpenCV could not decode it ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None:
        raise ImageError(
            f"{name}: OpenCV could not decode this {header.format.upper()} file (damaged, or a variant of the "
            "format it does not read)"
        )
    if image.size == 0:
        raise ImageError(f"{name}: the image has no pixels")
    _check_pixels(image.shape[0] * image.shape[1], max_pixels, name)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(image.shape[2])
        if code is None:
            raise ImageError(f"{name}: {image.shape[2]} channels; gpuseg reads grey, RGB and RGBA images")
        image = cv2.cvtColor(image, code)
    return np.ascontiguousarray(image)


def _check_max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1 (the most pixels an image may have), got {max_pixels!r}")


def _check_pixels(n: int, max_pixels: int, name: str) -> None:
    if n > max_pixels:
        raise ImageError(
            f"{name}: {n:,} pixels is more than the limit of {max_pixels:,}; raise it with max_pixels "
            "(--max-pixels on the command line) if the machine has the memory"
        )


def _header(source: Any, name: str) -> ImageHeader:
    try:
        return parse_header(source)
    except HeaderError as exc:
        raise ImageError(f"{name}: {exc}") from None


def _integrity_problem(data: bytes, fmt: str) -> str | None:
    """Why a PNG or JPEG is truncated or damaged, where its decoder would only warn and return filler."""
    if fmt == "png":
        return _png_problem(data)
    if fmt == "jpeg":
        from gpuseg.jpeg_scan import jpeg_problem

        return jpeg_problem(data)
    return None


def _png_problem(data: bytes) -> str | None:
    """Every chunk up to IEND complete, and every critical chunk's CRC right; data after IEND is ignored."""
    view, pos, n, image_data = memoryview(data), 8, len(data), False
    while True:
        if pos + 12 > n:
            return f"the PNG file ends at byte {n:,} before its IEND chunk (truncated)"
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > n:
            return f"the PNG file is truncated: its {kind.decode('latin-1')} chunk at byte {pos:,} runs past its end"
        if not kind[0] & 0x20:  # critical chunk: libpng would stop on a bad CRC, or worse, not notice
            (crc,) = struct.unpack_from(">I", data, end - 4)
            if zlib.crc32(view[pos + 4 : end - 4]) != crc:
                return (
                    f"the PNG file is damaged: the CRC of its {kind.decode('latin-1')} chunk at byte {pos:,} is wrong "
                    "(a truncated file with its end re-attached, or corrupted data)"
                )
        image_data |= kind == b"IDAT"
        if kind == b"IEND":
            return None if image_data else "the PNG file has no image data (IDAT chunk)"
        pos = end


# ----------------------------------------------------------------------------------------- plain files

_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class _RegularFile:
    """A regular file opened for reading, refused if it is anything else; reads are bounded by its size.

    Also a ``ByteSource`` for :func:`gpuseg.headers.parse_header`. Every ``OSError`` becomes ``error``
    naming the path.
    """

    def __init__(self, path: str | os.PathLike[str], error: type[GpusegError]) -> None:
        self.name, self.error = str(path), error
        with self._errors():
            self._require_regular(os.stat(path))
            # O_NONBLOCK: should a FIFO be swapped in after the check, opening it cannot block
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
            self.file = os.fdopen(fd, "rb", buffering=0)
        try:
            with self._errors():
                info = os.fstat(fd)
            self._require_regular(info)  # what was opened, whatever the path pointed to before
        except BaseException:
            self.file.close()
            raise
        self.size = info.st_size

    def __enter__(self) -> _RegularFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``, never past the size the file had when opened."""
        n = max(0, min(n, self.size - offset))
        if n == 0:
            return b""
        with self._errors():
            self.file.seek(offset)
            return self.file.read(n)

    def read_all(self) -> bytes:
        """The whole file as it was when opened: exactly ``size`` bytes."""
        buffer = bytearray(self.size)
        view, done = memoryview(buffer), 0
        with self._errors():
            self.file.seek(0)
            while done < self.size:
                got = self.file.readinto(view[done:])
                if not got:
                    raise self.error(f"{self.name}: the file shrank while being read ({done:,} of {self.size:,} bytes)")
                done += got
        return bytes(buffer)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise self.error(f"{self.name}: no such file") from None
        except OSError as exc:
            raise self.error(f"{self.name}: cannot be read ({exc.strerror or exc})") from exc

    def _require_regular(self, info: os.stat_result) -> None:
        if stat.S_ISREG(info.st_mode):
            return
        kind = next((what for test, what in _NOT_REGULAR if test(info.st_mode)), "not a regular file")
        raise self.error(
            f"{self.name}: is {kind}, not a file gpuseg can read; give it a regular file (save a stream to a "
            "file first)"
        )


# ---------------------------------------------------------------------------------------------- points


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
    with _RegularFile(path, GpusegError) as file:
        if file.size == 0:
            raise GpusegError(f"{path}: the file is empty")
        if suffix == ".npy":
            points, row_names = _read_npy(file, path), None
        else:
            points, row_names = _read_csv(file, path)
    _check_finite(points, path, row_names)
    return points


def _read_npy(file: _RegularFile, path: Path) -> np.ndarray:
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
            f"{path}: holds an array of shape {shape}; gpuseg clusters a 2-D array of N samples by F features: "
            "reshape it (X.reshape(-1, 1) for one feature per sample) and save it again"
        )
    if 0 in shape:
        raise GpusegError(f"{path}: holds an empty array of shape {shape}; there is nothing to cluster")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = file.size - file.file.tell()
    if need > have:
        raise GpusegError(
            f"{path}: its header claims an array of shape {shape} ({dtype}), {need:,} bytes, but only {have:,} "
            "bytes follow it: the file is truncated or damaged; save the array again with numpy.save"
        )
    _check_memory(need, f"an array of shape {shape} ({dtype})", path)
    try:
        file.file.seek(0)
        return npy.read_array(file.file, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise GpusegError(f"{path}: not a readable .npy file ({exc})") from None


def _read_csv(file: _RegularFile, path: Path) -> tuple[np.ndarray, list[int]]:
    """(points, 1-based line number in the file of each row)."""
    _check_memory(8 * file.size, f"the numbers of a {file.size:,}-byte CSV file", path)
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


def _check_finite(points: np.ndarray, path: Path, line_numbers: list[int] | None) -> None:
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


def _check_memory(need: int, what: str, path: Path) -> None:
    from gpuseg.engines.sklearn import available_memory

    have = available_memory()
    if need > have:
        raise MemoryLimitError(
            f"{path}: {what} takes {need / 2**30:.1f} GiB and {have / 2**30:.1f} GiB of memory is available; "
            "cluster a subset of the rows, or use a machine with more memory"
        )


# ---------------------------------------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], *, overwrite: bool = False) -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file beside it, then rename it into place.

    A failure at any point leaves no file at ``path`` (and no temporary file behind).
    """
    path = Path(path)
    return commit(stage(path, write, overwrite=overwrite), path)


def stage(path: Path, write: Callable[[Any], None], *, overwrite: bool = False) -> Path:
    """Write the temporary file of :func:`atomic_write` and return its path; :func:`commit` renames it.

    On failure nothing is left behind.
    """
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass --overwrite (overwrite=True) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit(tmp: Path, path: Path) -> Path:
    """Rename a staged temporary file into place (atomic on one file system)."""
    os.replace(tmp, path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def npy_writer(array: np.ndarray) -> Callable[[Any], None]:
    return lambda f: np.save(f, array, allow_pickle=False)


def png_writer(image: np.ndarray) -> Callable[[Any], None]:
    """A writer of an RGB(A), grey or uint16 image as PNG."""
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image, {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}[image.shape[2]])
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise GpusegError(f"OpenCV could not encode a {image.dtype} image of shape {image.shape} as PNG")
    return lambda f: f.write(buf.tobytes())


def json_writer(document: Any) -> Callable[[Any], None]:
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    return lambda f: f.write(text.encode())


def save_npy(path: str | os.PathLike[str], array: np.ndarray, *, overwrite: bool = False) -> Path:
    """Save an array as ``.npy``, atomically."""
    return atomic_write(path, npy_writer(array), overwrite=overwrite)


def save_png(path: str | os.PathLike[str], image: np.ndarray, *, overwrite: bool = False) -> Path:
    """Save an RGB(A), grey or uint16 image as PNG, atomically."""
    return atomic_write(path, png_writer(image), overwrite=overwrite)


def save_json(path: str | os.PathLike[str], document: Any, *, overwrite: bool = False) -> Path:
    """Save a JSON document, atomically."""
    return atomic_write(path, json_writer(document), overwrite=overwrite)
