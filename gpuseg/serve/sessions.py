"""The images of the open pages: decoded once, kept with their features in a bounded, expiring cache.

A page uploads its image once and then re-clusters it with other parameters many times; the service keeps
the decoded image, a downscaled preview of a large one, and the features built for each colour space, under
an id it hands out. The cache holds at most ``max_sessions`` images and ``max_bytes`` bytes (the least
recently used go first) and forgets an image unused for ``ttl_s`` seconds, so memory stays bounded however
many pages are open.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

PREVIEW_PIXELS = 250_000
"""Images larger than this get a preview downscaled to about this many pixels, clustered while dragging."""


@dataclass
class Session:
    """One page's image: ``image`` (RGB(A)), its ``preview`` (None when the image is small) and the
    features built so far, keyed by (colour space, alpha mode, preview or not)."""

    id: str
    name: str
    image: np.ndarray
    preview: np.ndarray | None
    features: dict[tuple[str, str, bool], object] = field(default_factory=dict)
    used: float = 0.0

    @property
    def nbytes(self) -> int:
        arrays = [self.image, self.preview, *(_feature_arrays(f) for f in self.features.values())]
        return sum(_nbytes(a) for a in arrays)


def _feature_arrays(features) -> list:
    return [getattr(features, name, None) for name in ("colors", "lut", "mask")]


def _nbytes(item) -> int:
    if item is None:
        return 0
    if isinstance(item, list):
        return sum(_nbytes(a) for a in item)
    return int(getattr(item, "nbytes", 0))


class SessionExpired(KeyError):
    """No image is kept under this id (never given, expired or evicted)."""


class SessionCache:
    """A bounded, expiring map of session id -> :class:`Session` (thread-safe).

    Parameters
    ----------
    max_sessions : int
        Images kept at most.
    max_bytes : int
        Bytes of images, previews and features kept at most (an image larger than this alone is refused).
    ttl_s : float
        An image unused this long is forgotten.
    """

    def __init__(
        self,
        max_sessions: int = 32,
        max_bytes: int = 2**30,
        ttl_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions, self.max_bytes, self.ttl_s, self._clock = max_sessions, max_bytes, ttl_s, clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image: np.ndarray, name: str) -> Session:
        """Keep ``image`` (and a preview of it when it is large) under a new id; older images make room.

        Raises
        ------
        ValueError
            The image alone is larger than ``max_bytes``.
        """
        if image.nbytes > self.max_bytes:
            raise ValueError(
                f"the image takes {image.nbytes / 2**20:.0f} MiB and the page cache holds "
                f"{self.max_bytes / 2**20:.0f} MiB; send a smaller image"
            )
        session = Session(secrets.token_urlsafe(12), name, image, preview_of(image), used=self._clock())
        with self._lock:
            self._sessions[session.id] = session
            self._trim()
        return session

    def get(self, session_id: str) -> Session:
        """The session, marked as just used.

        Raises
        ------
        SessionExpired
            No image under ``session_id``.
        """
        with self._lock:
            self._expire()
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionExpired(session_id)
            session.used = self._clock()
            self._sessions.move_to_end(session_id)
            return session

    def features(self, session: Session, color: str, alpha: str, preview: bool, build: Callable[[], object]):
        """The features of the session's image (or preview) for a colour space and alpha mode, built once."""
        key = (color, alpha, preview)
        built = session.features.get(key)
        if built is None:
            built = build()
            with self._lock:
                session.features[key] = built
                self._trim(keep=session.id)
        return built

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(s.nbytes for s in self._sessions.values())

    def _expire(self) -> None:
        now = self._clock()
        for sid in [sid for sid, s in self._sessions.items() if now - s.used > self.ttl_s]:
            del self._sessions[sid]

    def _trim(self, keep: str | None = None) -> None:
        """Drop expired sessions, then the least recently used until both bounds hold (``keep`` stays)."""
        self._expire()
        while len(self._sessions) > self.max_sessions or (
            len(self._sessions) > 1 and sum(s.nbytes for s in self._sessions.values()) > self.max_bytes
        ):
            oldest = next(iter(self._sessions))
            if oldest == keep:
                self._sessions.move_to_end(oldest)
                oldest = next(iter(self._sessions))
                if oldest == keep:
                    break
            del self._sessions[oldest]


def preview_of(image: np.ndarray) -> np.ndarray | None:
    """``image`` downscaled (area average) to about ``PREVIEW_PIXELS`` pixels, or None when it is that small."""
    import cv2

    h, w = image.shape[:2]
    if h * w <= PREVIEW_PIXELS:
        return None
    f = (PREVIEW_PIXELS / (h * w)) ** 0.5
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
