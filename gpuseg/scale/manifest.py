"""``manifest.jsonl``: one JSON line per image of a run, appended and flushed to disk as each image finishes.

The manifest is opened like every output: never through a symbolic link, only ever a regular file appended
to, and locked for the run, so that a second run on the same folder at the same time is refused at once
rather than interleaving its lines with the first's.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import Any

from gpuseg.errors import GpusegError

MANIFEST = "manifest.jsonl"


class Manifest:
    """The manifest of one run at ``path`` (None: a run without one, whose :meth:`record` does nothing).

    Each line names its run (the time it started and a random tag); runs append to the file, and an
    image's last line is its state.

    Raises
    ------
    GpusegError
        The path is a link, not a regular file, cannot be opened for appending, or another run holds it.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.run = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}-{secrets.token_hex(3)}"
        if path is not None:
            self._fd = _open_for_appending(path)

    def record(self, line: dict[str, Any]) -> None:
        """Append ``line`` (with the run's name first) and flush it to disk."""
        if self._fd is None:
            return
        data = (json.dumps({"run": self.run, **line}) + "\n").encode()
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with it
            self._fd = None


def _open_for_appending(path: Path) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise GpusegError(
                f"{path}: is a symbolic link; gpuseg appends to a manifest of its own, never through a link: "
                "remove the link, or choose another --out-dir"
            ) from None
        raise GpusegError(f"{path}: cannot be opened for appending ({exc.strerror or exc}); {_fix(path)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode) else "not a file"
            )
            raise GpusegError(f"{path}: is {kind}, not a manifest file; {_fix(path)}")
        _lock(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock(fd: int, path: Path) -> None:
    """An exclusive lock for the run (where the system has them): a second run on the folder is refused."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise GpusegError(
            f"{path}: another gpuseg run is writing into this folder now; wait for it to end, or choose another "
            "--out-dir"
        ) from None
    except OSError:  # a file system without locks: the run goes on unlocked
        return


def _fix(path: Path) -> str:
    return f"remove or rename it, or choose another --out-dir than {path.parent}"
