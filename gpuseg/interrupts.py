"""Ctrl-C during long compiled work.

Python runs signal handlers in the main thread, between bytecodes: while the main thread is inside a compiled
kernel, an interrupt waits until the kernel returns. :func:`call_interruptibly` runs such work in a worker
thread (the kernels release the GIL) while the main thread waits, so the interrupt reaches the caller at once;
the work is then told to stop through a flag the CPU kernels poll (:func:`stop_flag`), and ends on its own
within a fraction of a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np

T = TypeVar("T")
STOP_WAIT = 1.0
"""Seconds an interrupted call waits for its work to stop before it lets the interrupt through anyway."""
_last: threading.Thread | None = None


def stop_flag() -> np.ndarray:
    """A one-element array that CPU kernels poll (``if stop[0]: skip the rest``); set to stop them."""
    return np.zeros(1, dtype=np.bool_)


def call_interruptibly(fn: Callable[[], T], stop: np.ndarray | None = None) -> T:
    """``fn()``, run in a daemon thread when called from the main thread, so that ``KeyboardInterrupt`` (or
    any exception a signal handler raises) is raised here at once. ``stop`` is then set, so kernels that poll
    it end early, and the interrupt goes on once they have (or after :data:`STOP_WAIT` seconds); a later call
    waits for work still running, so that compiled kernels never run twice at once. From other threads (a
    pipeline's or a Dask worker's), ``fn`` runs in place."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    outcome: dict[str, object] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.set()

    global _last
    if _last is not None:
        _last.join()  # work left running by an earlier interrupt: never two at once
    worker = _last = threading.Thread(target=work, name="gpuseg-compute", daemon=True)
    worker.start()
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


def compute_threads_alive() -> bool:
    """Is work started by :func:`call_interruptibly` still running (e.g. after an interrupt)?"""
    return any(t.name == "gpuseg-compute" and t.is_alive() for t in threading.enumerate())
