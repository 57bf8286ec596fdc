"""The service's state: its settings, the device's job queue, readiness, metrics and the token check; and
what its routes share (the dependency that gives them the service, the answers they document).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import threading
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request

from gpuseg._core.device import Device, resolve_device
from gpuseg.params import DEFAULT_MAX_PIXELS, DeviceName, check
from gpuseg.serve import models
from gpuseg.serve.errors import ServiceError, from_library
from gpuseg.serve.jobs import JobQueue, QueueFullError
from gpuseg.serve.metrics import Metrics
from gpuseg.serve.sessions import SessionCache

LIBRARIES = ("numpy", "numba", "opencv-python-headless", "scikit-learn", "cupy-cuda12x", "fastapi", "uvicorn")
REPORT_HEADER = "X-Gpuseg-Report"
"""The header that carries the report (JSON) of a ``?format=npy`` answer."""


@dataclass(frozen=True)
class Settings:
    """What ``gpuseg serve`` is started with.

    Attributes
    ----------
    device : {"auto", "cpu", "gpu"}
        Where every request is clustered.
    token : str, optional
        When set, every route but ``/v1/health`` needs ``Authorization: Bearer <token>``.
    max_upload_bytes : int
        Largest request body.
    max_pixels : int
        Largest image (width * height), checked from its header before decoding.
    queue_size : int
        Jobs that may wait for the device; more are answered 503.
    timeout_s : float
        Seconds a request may wait and run before it is answered 504.
    warm_up : bool
        Compile the kernels when the app starts (``/v1/ready`` answers 503 until they are).
    page_sessions, page_cache_bytes, page_ttl_s
        The images the interactive page keeps (see :class:`~gpuseg.serve.sessions.SessionCache`): at most
        this many, in this many bytes, each forgotten after this many seconds unused.
    """

    device: DeviceName = "auto"
    token: str | None = None
    max_upload_bytes: int = 64 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    queue_size: int = 16
    timeout_s: float = 300.0
    warm_up: bool = True
    page_sessions: int = 32
    page_cache_bytes: int = 2**30
    page_ttl_s: float = 900.0

    def __post_init__(self) -> None:
        check("device", self.device)
        check("max_pixels", self.max_pixels)
        if self.token is not None and not self.token:
            raise ValueError("the token is empty; give a token, or none to serve without one")
        for name in ("max_upload_bytes", "max_pixels", "queue_size", "page_sessions", "page_cache_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s={self.timeout_s} must be a positive number of seconds")


class Service:
    """The state of one app: its settings, the device, the job queue, readiness and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Device = resolve_device(settings.device)  # device='gpu' without one fails here, at start
        self.jobs: JobQueue | None = None
        self.ready = threading.Event()
        self.not_ready_reason: str | None = "starting"
        self.metrics = Metrics(lambda: self.jobs.depth if self.jobs else 0)
        self.auth = Depends(self._check_token)
        self.sessions = SessionCache(settings.page_sessions, settings.page_cache_bytes, settings.page_ttl_s)

    def start(self) -> None:
        self.jobs = JobQueue(self.settings.queue_size)
        if not self.settings.warm_up:
            self._became_ready()
            return
        self.not_ready_reason = "compiling the kernels"
        self.jobs.submit(self._warm_up).add_done_callback(self._warmed)

    def stop(self) -> None:
        self.ready.clear()
        self.not_ready_reason = "shutting down"
        if self.jobs is not None:
            self.jobs.close()

    def _warm_up(self) -> None:
        """Run each kernel the service uses once, on the device's thread, on a tiny image and point set."""
        from gpuseg.data import shapes_image
        from gpuseg.engines.run import dbscan
        from gpuseg.segmentation.pipeline import segment

        image = shapes_image(24, 32, seed=1)[0]
        segment(image, device=self.settings.device)  # colour + position: the grid engine
        segment(image, xy_scale=None, device=self.settings.device)  # colour only: the cell engine
        dbscan(np.random.default_rng(0).random((64, 2)), eps=0.1, min_samples=4, device=self.settings.device)

    def _warmed(self, future) -> None:
        if future.exception() is not None:
            self.not_ready_reason = f"warming up failed: {future.exception()}"
        else:
            self._became_ready()

    def _became_ready(self) -> None:
        self.not_ready_reason = None
        self.ready.set()

    def _check_token(self, request: Request) -> None:
        token = self.settings.token
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
            raise ServiceError(
                401, "this service needs 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
            )

    async def run(self, job):
        """``job()`` on the device's thread; its answer, or the HTTP error it comes to.

        Raises
        ------
        ServiceError
            503 (with Retry-After) when the queue is full, 504 past the time limit, 4xx for bad input.
        """
        if self.jobs is None or not self.jobs.alive():
            raise ServiceError(503, "the service is not running", {"Retry-After": "5"})
        try:
            future = self.jobs.submit(job)
        except QueueFullError as exc:
            raise ServiceError(
                503,
                f"the device's queue is full ({self.settings.queue_size} jobs waiting, --queue); retry later",
                {"Retry-After": str(exc.retry_after)},
            ) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.settings.timeout_s)
        except TimeoutError:
            started = not future.cancelled()
            raise ServiceError(
                504,
                f"the request took longer than the limit of {self.settings.timeout_s:g} s (--timeout) "
                + ("while it ran; its result is discarded" if started else "waiting for the device; it did not run")
                + "; send a smaller image, or retry when the service is less busy",
            ) from None
        except Exception as exc:
            mapped = from_library(exc)
            if mapped is None:
                raise
            raise mapped from None


def _service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(_service)]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.Problem, "description": text}
    for code, text in {
        401: "no or wrong bearer token",
        413: "body over --max-upload-mb, image over --max-pixels, or more memory than the machine has",
        415: "not an image gpuseg reads",
        422: "a bad parameter, an empty or damaged upload (the message names it and the fix)",
        503: "the device's queue is full (see Retry-After), or the GPU cannot run it now",
        504: "past the time limit (--timeout)",
    }.items()
}

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
