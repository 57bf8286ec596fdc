"""Writing outputs all together or not at all: output sets, atomic single files and the writers of each format."""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg.errors import GpusegError, OutputExistsError


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


def _stage_rendered(outputs: OutputSet, path: Path, render: Callable[[], Callable[[Any], None]]) -> None:
    outputs.stage(path, render())


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
        futures = [pool.submit(_stage_rendered, outputs, path, render) for path, render in renders.items()]
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
