"""Reading images with OpenCV (header first, bounded) and writing outputs all together or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg.errors import GpusegError, ImageError, OutputExistsError
from gpuseg.headers import ImageHeader, read_header

DEFAULT_MAX_PIXELS = 2**28
"""Largest image (width * height) :func:`load_image` accepts unless told otherwise."""


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file with OpenCV, in RGB(A) channel order and its own dtype.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, TIFF, BMP, WebP or PNM/PAM/PFM file (see :data:`gpuseg.headers.FORMATS`), 8- or 16-bit
        (32-bit float for TIFF and PFM), grey, RGB or RGBA.
    max_pixels : int, optional
        Refuse images with more pixels than this (default ``2**28``), from the header, before decoding.

    Returns
    -------
    image : ndarray
        ``(H, W)`` for grey images, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, dtype uint8, uint16 or float32.
        JPEG EXIF orientation is applied.

    Raises
    ------
    ImageError
        The file is missing, not a regular file (a directory, a FIFO, a device), not an image gpuseg reads,
        truncated or damaged, empty, or larger than ``max_pixels``.
    """
    path = Path(path)
    with open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ImageError(f"{path}: the file is empty")
        limit = max_file_bytes(max_pixels)
        if size > limit:
            raise ImageError(
                f"{path}: {size:,} bytes is more than any image of at most {max_pixels:,} pixels takes "
                f"({limit:,} bytes); raise max_pixels=<pixels> if it is one"
            )
        _check_pixels(read_header(f, str(path)), max_pixels, str(path))
        f.seek(0)
        data = f.read(size + 1)
    if len(data) > size:
        raise ImageError(f"{path}: the file grew while it was read; read it once it is complete")
    return decode_image(data, name=str(path), max_pixels=max_pixels)


def image_header(path: str | os.PathLike[str]) -> ImageHeader:
    """The :class:`~gpuseg.headers.ImageHeader` of an image file, read without decoding it."""
    with open_regular_file(Path(path)) as f:
        return read_header(f, str(path))


def open_regular_file(path: Path, what: str = "image file"):
    """Open ``path`` for reading after checking that it is a regular file (a FIFO would block, a device never
    end); errors name the path and what it is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(mode):
        kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device"}
        kinds |= {stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
        kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
        raise ImageError(f"{path}: is {kind}, not an {what}; give the path of a regular file")
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def max_file_bytes(max_pixels: int) -> int:
    """The largest file an image of ``max_pixels`` pixels can be: uncompressed 4 channels of 4 bytes, plus
    64 MiB for metadata and trailing data (a motion photo's video)."""
    return max_pixels * 16 + 2**26


def decode_image(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image held in memory; the same rules and result as :func:`load_image`."""
    import cv2

    if max_pixels < 1:
        raise ValueError(f"max_pixels={max_pixels} must be >= 1")
    if len(data) == 0:
        raise ImageError(f"{name}: the file is empty")
    header = read_header(data, name)
    _check_pixels(header, max_pixels, name)
    if header.format == "png":
        _check_png(data, name)
    if header.format == "jpeg":
        data = data[: _jpeg_end(data, name)]  # what follows the image (a motion photo's video) is not decoded
    # IMREAD_UNCHANGED keeps alpha and 16 bits but ignores EXIF orientation; JPEG has no alpha, so it is
    # decoded with flags that keep depth and colour and apply the orientation.
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if header.format == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        if header.format == "jpeg":
            with decoder_messages() as messages:
                image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
            if messages.text:
                raise ImageError(f"{name}: the JPEG data is damaged ({messages.text.strip().splitlines()[0]})")
        else:
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(f"{name}: OpenCV could not decode it ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None:
        raise ImageError(f"{name}: OpenCV could not decode this {header.format.upper()} file (damaged?)")
    if image.size == 0:
        raise ImageError(f"{name}: the image has no pixels")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(image.shape[2])
        if code is None:
            raise ImageError(f"{name}: {image.shape[2]} channels; gpuseg reads grey, RGB and RGBA images")
        image = cv2.cvtColor(image, code)
    return np.ascontiguousarray(image)


def _check_pixels(header: ImageHeader, max_pixels: int, name: str) -> None:
    if header.pixels > max_pixels:
        raise ImageError(
            f"{name}: {header.width}x{header.height} = {header.pixels:,} pixels is more than the limit of "
            f"{max_pixels:,}; raise max_pixels={header.pixels} if the machine has the memory"
        )


def _check_png(data: bytes, name: str) -> None:
    """Walk the chunks to IEND, checking each CRC: decoders fill a truncated PNG with grey and only warn."""
    offset = 8
    while True:
        if offset + 12 > len(data):
            raise ImageError(f"{name}: the PNG file is truncated (it ends inside a chunk, before IEND)")
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        end = offset + 12 + length
        if end > len(data):
            raise ImageError(f"{name}: the PNG file is truncated (its {kind.decode('latin-1')} chunk is cut short)")
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[offset + 4 : end - 4]) != crc:
            raise ImageError(f"{name}: the PNG file is damaged (bad checksum in its {kind.decode('latin-1')} chunk)")
        if kind == b"IEND":
            return
        offset = end


_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_end(data: bytes, name: str) -> int:
    """Offset just past the JPEG's end-of-image marker, found by walking its segments and scans (bytes after
    it, such as a motion photo's video, are not part of the image)."""
    offset = 2
    while offset + 2 <= len(data):
        if data[offset] != 0xFF:
            raise ImageError(f"{name}: the JPEG file is damaged (no marker at byte {offset})")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xD9:
            return offset + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            offset += 2
            continue
        if offset + 4 > len(data):
            break
        length = struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        offset += 2 + length
        if marker == 0xDA:  # entropy-coded data up to the next marker
            found = _JPEG_MARKER.search(data, offset)
            if found is None:
                break
            offset = found.start()
    raise ImageError(f"{name}: the JPEG file is truncated (no end-of-image marker)")


class _Messages:
    text = ""


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def decoder_messages():
    """Collect what a C decoder prints on the process's standard error (libjpeg reports damaged data only
    there). Held under a lock; anything else written to standard error meanwhile is passed on afterwards."""
    messages = _Messages()
    with _STDERR_LOCK, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
        ours = [line for line in text.splitlines(keepends=True) if _is_decoder_message(line)]
        others = "".join(line for line in text.splitlines(keepends=True) if not _is_decoder_message(line))
        if others:
            os.write(2, others.encode())
        messages.text = "".join(ours)


def _is_decoder_message(line: str) -> bool:
    return any(word in line for word in ("JPEG", "jpeg", "Premature end", "Corrupt", "marker"))


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
