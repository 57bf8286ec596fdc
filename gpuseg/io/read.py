"""Reading images with OpenCV: the header first, bounded by the pixel limit, from regular files only."""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpuseg.errors import GpusegError, ImageError
from gpuseg.io.headers import BytesSource, HeaderError, ImageHeader, parse_header
from gpuseg.params import DEFAULT_MAX_PIXELS, check

MAX_BYTES_PER_PIXEL = 32
"""No image encoding takes more than this per pixel (four float64 channels, uncompressed)."""

FILE_SLACK_BYTES = 2**26
"""Room beyond the pixels for metadata and trailing data (EXIF, ICC profiles, a motion photo's video)."""


def max_file_bytes(max_pixels: int) -> int:
    """The largest file an image of ``max_pixels`` pixels can be, metadata and trailing data included."""
    return MAX_BYTES_PER_PIXEL * max_pixels + FILE_SLACK_BYTES


def read_header(path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview) -> ImageHeader:
    """What an image says about itself (format, size, channels, bytes per channel), without decoding it.

    Reads at most ``gpuseg.io.headers.HEADER_READ_LIMIT`` bytes at known offsets, whatever the file's size.

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
    with RegularFile(path_or_bytes, ImageError) as file:
        return _header(file, file.name)


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> np.ndarray:
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
        ``max_pixels`` is not a whole number from 1 to 2**53.

    Examples
    --------
    >>> from gpuseg.data import shapes_image
    >>> from gpuseg.io.write import save_png
    >>> _ = save_png("scene.png", shapes_image(30, 40, seed=1)[0])
    >>> image = load_image("scene.png")
    >>> image.shape, image.dtype
    ((30, 40, 3), dtype('uint8'))
    >>> load_image("scene.png", max_pixels=1000)
    Traceback (most recent call last):
        ...
    gpuseg.errors.ImageError: scene.png: 40x30 = 1,200 pixels is more than the limit of 1,000; raise max_pixels=1200 ...
    """
    data, _, name = read_checked(path, max_pixels)
    return decode_image(data, name=name, max_pixels=max_pixels)


def read_checked(path: str | os.PathLike[str], max_pixels: int | None = None) -> tuple[bytearray, ImageHeader, str]:
    """The bytes of an image file, its header and its name, after the checks of :func:`load_image` that come
    before decoding: a regular file, no larger than an image of ``max_pixels`` takes, whose header is
    readable and claims at most ``max_pixels`` pixels.

    Raises
    ------
    ImageError
        As :func:`load_image`.
    """
    max_pixels = pixel_limit(max_pixels)
    with RegularFile(path, ImageError) as file:
        limit = max_file_bytes(max_pixels)
        if file.size > limit:
            raise ImageError(
                f"{file.name}: {file.size:,} bytes is more than any image of at most {max_pixels:,} pixels takes "
                f"({limit:,} bytes); raise max_pixels=<pixels> if it is one"
            )
        header = _header(file, file.name)
        _check_pixels(header.height, header.width, max_pixels, file.name)
        return file.read_all(), header, file.name


def decode_image(data: bytes | bytearray, *, name: str = "<bytes>", max_pixels: int | None = None) -> np.ndarray:
    """Decode an encoded image held in memory; the same rules and result as :func:`load_image`."""
    import cv2

    max_pixels = pixel_limit(max_pixels)
    header = _header(BytesSource(data), name)
    _check_pixels(header.height, header.width, max_pixels, name)
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
    _check_pixels(image.shape[0], image.shape[1], max_pixels, name)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(image.shape[2])
        if code is None:
            raise ImageError(f"{name}: {image.shape[2]} channels; gpuseg reads grey, RGB and RGBA images")
        image = cv2.cvtColor(image, code)
    return np.ascontiguousarray(image)


def pixel_limit(max_pixels: int | None) -> int:
    """The most pixels an image may have: ``max_pixels`` checked, or the default for images decoded whole."""
    limit = check("max_pixels", max_pixels)
    return DEFAULT_MAX_PIXELS if limit is None else limit


def _check_pixels(height: int, width: int, max_pixels: int, name: str) -> None:
    if height * width > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} = {height * width:,} pixels is more than the limit of {max_pixels:,}; "
            f"raise max_pixels={height * width} if the machine has the memory"
        )


def _header(source: Any, name: str) -> ImageHeader:
    try:
        return parse_header(source)
    except HeaderError as exc:
        raise ImageError(f"{name}: {exc}") from None


def _integrity_problem(data: bytes | bytearray, fmt: str) -> str | None:
    """Why a PNG or JPEG is truncated or damaged, where its decoder would only warn and return filler."""
    if fmt == "png":
        return _png_problem(data)
    if fmt == "jpeg":
        from gpuseg.io.jpeg_scan import jpeg_problem

        return jpeg_problem(data)
    return None


def _png_problem(data: bytes | bytearray) -> str | None:
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


class RegularFile:
    """A regular file opened for reading, refused if it is anything else; reads are bounded by its size.

    Also a ``ByteSource`` for :func:`gpuseg.io.headers.parse_header`. Every ``OSError`` becomes ``error``
    naming the path.
    """

    def __init__(self, path: str | os.PathLike[str], error: type[GpusegError], what: str = "image file") -> None:
        self.name, self.error, self.what = str(path), error, what
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

    def __enter__(self) -> RegularFile:
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

    def read_all(self) -> bytearray:
        """The whole file as it was when opened: exactly ``size`` bytes (not copied again)."""
        buffer = bytearray(self.size)
        view, done = memoryview(buffer), 0
        with self._errors():
            self.file.seek(0)
            while done < self.size:
                got = self.file.readinto(view[done:])
                if not got:
                    raise self.error(f"{self.name}: the file shrank while being read ({done:,} of {self.size:,} bytes)")
                done += got
        return buffer

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
            f"{self.name}: is {kind}, not an {self.what}; give the path of a regular file (save a stream to a "
            "file first)"
        )
