"""Seconds per stage: a timer that synchronises the device before each clock read."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StageTimer:
    """Seconds per named stage. ``sync`` is called before each clock read, so device work is counted in the
    stage that launched it.

    Examples
    --------
    >>> timer = StageTimer()
    >>> with timer.stage("load"):
    ...     pass
    >>> list(timer.seconds)
    ['load']
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def format_seconds(s: float) -> str:
    """Milliseconds below a second, else seconds.

    Examples
    --------
    >>> format_seconds(0.0123), format_seconds(2.5)
    ('12.3 ms', '2.50 s')
    """
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"
