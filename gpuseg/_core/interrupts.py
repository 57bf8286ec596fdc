"""Ctrl-C during long compiled work.

Python runs signal handlers in the main thread, between bytecodes: while the main thread is inside a compiled
kernel, an interrupt waits until the kernel returns. :func:`call_interruptibly` runs such work in a worker
thread (the kernels release the GIL) while the main thread waits, so the interrupt reaches the caller at once;
the work is then told to stop through a flag the CPU kernels poll (:func:`stop_flag`), and ends on its own
within a fraction of a second.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np

T = TypeVar("T")
STOP_WAIT = 1.0
"""Seconds an interrupted call waits for its work to stop before it lets the interrupt through anyway."""
_lock = threading.Lock()
_worker: tuple[int, threading.Thread, queue.SimpleQueue] | None = None
"""(process id, thread, its task queue): one long-lived worker, so that parallel kernels always start from the
same thread (numba's OpenMP layer builds a team of threads for each new calling thread: ~8 ms a run)."""
_pending = 0
"""Calls submitted to the worker and not finished (work left running by an interrupt included)."""


def stop_flag() -> np.ndarray:
    """A one-element array that CPU kernels poll (``if stop[0]: skip the rest``); set to stop them."""
    return np.zeros(1, dtype=np.bool_)


def call_interruptibly(fn: Callable[[], T], stop: np.ndarray | None = None) -> T:
    """``fn()``, run in gpuseg's compute thread when called from the main thread, so that ``KeyboardInterrupt``
    (or any exception a signal handler raises) is raised here at once. ``stop`` is then set, so kernels that
    poll it end early, and the interrupt goes on once they have (or after :data:`STOP_WAIT` seconds); calls run
    one after the other, so that compiled kernels never run twice at once. From other threads (a pipeline's or
    a Dask worker's), ``fn`` runs in place."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    outcome: dict[str, object] = {}
    done = threading.Event()
    _submit(fn, outcome, done)
    try:
        done.wait()
    except BaseException:
        if stop is not None:
            stop[0] = True
            done.wait(STOP_WAIT)  # the CPU kernels notice at their next row or cell
        raise
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def _submit(fn: Callable[[], object], outcome: dict, done: threading.Event) -> None:
    global _worker, _pending
    with _lock:
        if _worker is None or _worker[0] != os.getpid() or not _worker[1].is_alive():  # first call, or a fork
            tasks: queue.SimpleQueue = queue.SimpleQueue()
            thread = threading.Thread(target=_serve, args=(tasks,), name="gpuseg-compute", daemon=True)
            thread.start()
            _worker = (os.getpid(), thread, tasks)
            _pending = 0
        _pending += 1
        _worker[2].put((fn, outcome, done))


def _serve(tasks: queue.SimpleQueue) -> None:
    global _pending
    while True:
        fn, outcome, done = tasks.get()
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            del fn
            with _lock:
                _pending -= 1
            done.set()


def compute_threads_alive() -> bool:
    """Is work started by :func:`call_interruptibly` still running (e.g. after an interrupt)?"""
    with _lock:
        return _pending > 0
