"""Reading images with OpenCV (header first, bounded, regular files only) and writing outputs all together or
not at all."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg.errors import GpusegError, ImageError, OutputExistsError
from gpuseg.headers import BytesSource, HeaderError, ImageHeader, parse_header

DEFAULT_MAX_PIXELS = 2**28
"""Largest image (width * height) :func:`load_image` accepts unless told otherwise."""

MAX_BYTES_PER_PIXEL = 32
"""No image encoding takes more than this per pixel (four float64 channels, uncompressed)."""

FILE_SLACK_BYTES = 2**26
"""Room beyond the pixels for metadata and trailing data (EXIF, ICC profiles, a motion photo's video)."""


def max_file_bytes(max_pixels: int) -> int:
    """The largest file an image of ``max_pixels`` pixels can be, metadata and trailing data included."""
    return MAX_BYTES_PER_PIXEL * max_pixels + FILE_SLACK_BYTES


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
    with RegularFile(path_or_bytes, ImageError) as file:
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
        ``max_pixels`` is less than 1.
    """
    data, _, name = read_checked(path, max_pixels)
    return decode_image(data, name=name, max_pixels=max_pixels)


def read_checked(
    path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[bytearray, ImageHeader, str]:
    """The bytes of an image file, its header and its name, after the checks of :func:`load_image` that come
    before decoding: a regular file, no larger than an image of ``max_pixels`` takes, whose header is
    readable and claims at most ``max_pixels`` pixels.

    Raises
    ------
    ImageError
        As :func:`load_image`.
    """
    _check_max_pixels(max_pixels)
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


def decode_image(data: bytes | bytearray, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image held in memory; the same rules and result as :func:`load_image`."""
    import cv2

    _check_max_pixels(max_pixels)
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


def _check_max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        raise ValueError(f"max_pixels={max_pixels} must be >= 1 (the most pixels an image may have)")


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


class RegularFile:
    """A regular file opened for reading, refused if it is anything else; reads are bounded by its size.

    Also a ``ByteSource`` for :func:`gpuseg.headers.parse_header`. Every ``OSError`` becomes ``error``
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


# ---------------------------------------------------------------------------------------------- writing


class OutputSet:
    """Files that appear together or not at all.

    Each file is written into a hidden temporary file beside its target (created with ``O_EXCL`` and mode
    0o666, so the kernel applies the process umask; the umask itself is never changed), and :meth:`commit`
    renames all of them into place. Until then nothing is visible; :meth:`abort` (called on any exception,
    ``KeyboardInterrupt`` included, when used as a context manager) removes every temporary file, also those of
    writers still running in other threads, which remove their own file when they finish.

    Without ``overwrite``, an existing target is never replaced: the check is made up front, and the commit
    links the file into place, which fails rather than replace a file that appeared meanwhile.
    """

    def __init__(self, paths, *, overwrite: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.overwrite = overwrite
        seen: dict[Path, Path] = {}
        for path in self.paths:
            key = path.resolve()
            if key in seen:
                raise ValueError(f"{path}: written twice by one output set")
            seen[key] = path
        if not overwrite:
            existing = [str(p) for p in self.paths if p.exists() or p.is_symlink()]
            if existing:
                raise OutputExistsError(f"{', '.join(existing)}: exist; pass --overwrite to replace them")
        self._lock = threading.Lock()
        self._staged: dict[Path, Path] = {}
        self._aborted = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def stage(self, path: str | os.PathLike[str], write: Callable[[Any], None]) -> None:
        """Write one of the set's files into its temporary file (safe to call from several threads)."""
        path = Path(path)
        if path not in self.paths:
            raise ValueError(f"{path} is not one of this output set's files")
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._aborted:
                raise OutputAbortedError(f"{path}: not written, its output set was abandoned")
            tmp, fd = _create_temporary(path)
            self._staged[path] = tmp
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
        except BaseException:
            with self._lock:
                self._staged.pop(path, None)
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            if self._aborted:  # abandoned while this file was being written
                tmp.unlink(missing_ok=True)
                raise OutputAbortedError(f"{path}: not written, its output set was abandoned")

    def commit(self) -> list[Path]:
        """Rename every staged file into place, in the order of ``paths`` (put the report last).

        An interrupt that arrives during the renames lets them finish first: the set appears whole.
        """
        missing = [str(p) for p in self.paths if p not in self._staged]
        if missing:
            raise ValueError(f"{', '.join(missing)}: never written; the output set is incomplete")
        with self._lock:
            pending = list(self.paths)
            interrupted = None
            while pending:
                try:
                    self._place(self._staged[pending[0]], pending[0])
                except BaseException as exc:
                    if isinstance(exc, Exception):
                        self._undo(self.paths[: len(self.paths) - len(pending)])
                        raise
                    interrupted = interrupted or exc  # finish the renames, then let the interrupt through
                    continue
                del self._staged[pending.pop(0)]
            if interrupted is not None:
                raise interrupted
        return list(self.paths)

    def abort(self) -> None:
        """Remove every temporary file; writers still running remove theirs when they finish."""
        with self._lock:
            self._aborted = True
            for tmp in self._staged.values():
                tmp.unlink(missing_ok=True)
            self._staged.clear()

    def _place(self, tmp: Path, path: Path) -> None:
        if self.overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # fails if the target appeared since the check
        except FileExistsError:
            if os.path.samefile(tmp, path):  # linked already, before an interrupt
                tmp.unlink()
                return
            raise OutputExistsError(f"{path}: appeared while it was being written; not replaced") from None
        except OSError:  # a file system without hard links
            if path.exists():
                raise OutputExistsError(f"{path}: appeared while it was being written; not replaced") from None
            os.replace(tmp, path)
            return
        tmp.unlink()

    def _undo(self, placed: list[Path]) -> None:
        """After a failed commit without overwrite, remove the files this set already placed."""
        if not self.overwrite:
            for path in placed:
                path.unlink(missing_ok=True)
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged.clear()


class OutputAbortedError(GpusegError):
    """A file of an output set that was abandoned (interrupt or failure of another file) was not written."""


_LIVE: set[OutputSet] = set()
_LIVE_LOCK = threading.Lock()


def abort_all_outputs() -> None:
    """Abandon every output set in progress in this process (the command line calls this on an interrupt,
    before it exits without waiting for its threads)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for outputs in live:
        outputs.abort()


def _create_temporary(path: Path) -> tuple[Path, int]:
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
    raise OSError(f"{path}: could not create a temporary file beside it")


def write_outputs(
    renders: dict[Path, Callable[[], Callable[[Any], None]]], *, overwrite: bool = False, threads: int = 1
) -> list[Path]:
    """Write files all together or not at all (see :class:`OutputSet`), in the order of ``renders``.

    ``renders`` maps each path to a function that prepares its content (encoding, in a pool of ``threads``
    threads) and returns the writer of the file object.
    """
    with OutputSet(renders, overwrite=overwrite) as outputs:
        stage_all(outputs, renders, threads=threads)
        return outputs.commit()


def stage_all(outputs: OutputSet, renders: dict[Path, Callable[[], Callable[[Any], None]]], *, threads: int) -> None:
    """Stage the files of ``renders`` into ``outputs``, in a pool of ``threads`` threads (encoders release the
    GIL). On the first failure, or an interrupt, the set is abandoned and this returns without waiting for the
    writers still running."""
    if threads <= 1:
        for path, render in renders.items():
            outputs.stage(path, render())
        return
    pool = ThreadPoolExecutor(min(threads, len(renders)), thread_name_prefix="gpuseg-write")
    try:
        futures = [pool.submit(lambda p=p, r=r: outputs.stage(p, r())) for p, r in renders.items()]
        for future in futures:
            future.result()
    except BaseException:
        outputs.abort()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], *, overwrite: bool = False) -> Path:
    """Write one file through ``write(fileobj)``: it appears complete or not at all (see :class:`OutputSet`)."""
    return write_outputs({Path(path): lambda: write}, overwrite=overwrite)[0]


def npy_writer(array: np.ndarray) -> Callable[[Any], None]:
    return lambda f: np.save(f, array, allow_pickle=False)


def png_writer(image: np.ndarray) -> Callable[[Any], None]:
    """A writer of an RGB(A), grey or uint16 image as PNG."""
    return picture_writer(image, "png")


PICTURE_ENCODING = {
    "png": (".png", []),
    "jpg": (".jpg", [1, 90]),  # cv2.IMWRITE_JPEG_QUALITY
    "webp": (".webp", [64, 90]),  # cv2.IMWRITE_WEBP_QUALITY (lossy)
}
"""OpenCV's extension and parameters for each picture format."""


def picture_writer(image: np.ndarray, picture_format: str) -> Callable[[Any], None]:
    """A writer of an RGB picture as PNG (lossless), JPEG or WebP (quality 90)."""
    import cv2

    ext, params = PICTURE_ENCODING[picture_format]
    if image.ndim == 3:
        image = cv2.cvtColor(image, {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}[image.shape[2]])
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise GpusegError(f"OpenCV could not encode a {image.dtype} image of shape {image.shape} as {picture_format}")
    return lambda f: f.write(buf.tobytes())


def encoded(writer: Callable[[Any], None]) -> bytes:
    """The bytes a writer (``png_writer``, ``npy_writer``, ``picture_writer``, ...) would write to a file."""
    import io

    out = io.BytesIO()
    writer(out)
    return out.getvalue()


def json_writer(document: Any) -> Callable[[Any], None]:
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    return lambda f: f.write(text.encode())


def save_npy(path: str | os.PathLike[str], array: np.ndarray, *, overwrite: bool = False) -> Path:
    """Save an array as ``.npy``, atomically."""
    return atomic_write(path, npy_writer(array), overwrite=overwrite)


def save_png(path: str | os.PathLike[str], image: np.ndarray, *, overwrite: bool = False) -> Path:
    """Save an RGB(A), grey or uint16 image as PNG, atomically."""
    return atomic_write(path, png_writer(image), overwrite=overwrite)
