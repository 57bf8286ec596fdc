"""The device's queue: one worker thread runs jobs one at a time, in order, from a bounded queue.

Request handlers submit a job and await its future, so the event loop never runs a kernel; a full queue is
refused at once (the service answers 503 with Retry-After) rather than piling work up. One long-lived
thread also means numba's thread team is built once, as in :mod:`gpuseg._core.interrupts`.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class QueueFullError(Exception):
    """The queue holds as many jobs as it may; ``retry_after`` is a guess, in seconds, of when one will fit."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class JobQueue:
    """A bounded queue of jobs and the one thread that runs them.

    Parameters
    ----------
    size : int
        Jobs that may wait (the one running is not counted).
    after_job : callable, optional
        Called on the worker thread after each job, its inputs and result released (default:
        :func:`release_memory`).
    """

    def __init__(self, size: int, *, name: str = "gpuseg-serve-device", after_job=None) -> None:
        if size < 1:
            raise ValueError(f"queue size {size} must be >= 1")
        self._jobs: queue.Queue = queue.Queue(maxsize=size)
        self._closed = threading.Event()
        self._running = 0
        self._recent: collections.deque[float] = collections.deque(maxlen=32)  # the last jobs' seconds: Retry-After
        self._after_job = release_memory if after_job is None else after_job
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Queue ``fn``; its future holds what it returns or raises. A future cancelled before the job starts
        skips the job (a request that gave up waiting).

        Raises
        ------
        QueueFullError
            The queue is full.
        RuntimeError
            The queue was closed.
        """
        if self._closed.is_set():
            raise RuntimeError("the job queue is closed")
        future: Future = Future()
        try:
            self._jobs.put_nowait((fn, future))
        except queue.Full:
            raise QueueFullError(self.retry_after()) from None
        return future

    @property
    def depth(self) -> int:
        """Jobs waiting plus the one running."""
        return self._jobs.qsize() + self._running

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed.is_set()

    def retry_after(self) -> int:
        """Seconds until the queue has room, guessed from the recent jobs' durations (at least 1)."""
        mean = sum(self._recent) / len(self._recent) if self._recent else 1.0
        return max(1, math.ceil(mean * max(self.depth, 1)))

    def close(self, wait: float = 5.0) -> None:
        """Stop taking jobs; the worker finishes the job it runs and those queued, then ends (waited for up
        to ``wait`` seconds; it is a daemon thread, so it never holds the process up)."""
        self._closed.set()
        self._thread.join(wait)

    def _work(self) -> None:
        while True:
            try:
                fn, future = self._jobs.get(timeout=0.2)
            except queue.Empty:
                if self._closed.is_set():
                    return
                continue
            if not future.set_running_or_notify_cancel():
                continue
            self._running = 1
            start = time.perf_counter()
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                del fn, future  # the job's inputs and result are freed with the request, not kept here
                self._recent.append(time.perf_counter() - start)
                self._running = 0
            self._after_job()


def release_memory() -> None:
    """Give the memory freed by a job back to the system, so that the process returns to its size before it.

    glibc keeps freed heap memory for reuse (a 2 MP request left the process 50 MiB larger, for good);
    ``malloc_trim(0)`` returns it (a few milliseconds). Elsewhere this does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL("libc.so.6").malloc_trim
    return None
