"""The FastAPI app: settings, the app factory, its lifespan and its routes.

Handlers check what is cheap to check on the event loop (body size, image header, parameters) and hand the
rest (decoding, clustering, encoding) to the device's :class:`~gpuseg.serve.jobs.JobQueue` as one job, whose
future they await. Every route is under ``/v1`` except ``/metrics``; routes other than health need the bearer
token when one is set. More routes can be added with ``app.include_router(router, dependencies=[auth])``, where
``auth = app.state.service.auth``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import platform
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gpuseg import __version__
from gpuseg.device import DEVICES, Device, resolve_device
from gpuseg.io import DEFAULT_MAX_PIXELS
from gpuseg.serve import models
from gpuseg.serve.errors import ServiceError, from_library
from gpuseg.serve.jobs import JobQueue, QueueFullError
from gpuseg.serve.metrics import Metrics
from gpuseg.serve.sessions import SessionCache
from gpuseg.serve.uploads import check_image, read_body, upload_field

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

    device: str = "auto"
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
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r} is not one of {', '.join(DEVICES)}")
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
        from gpuseg.cluster import dbscan
        from gpuseg.pipeline import segment
        from gpuseg.synthetic import shapes_image

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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gpuseg HTTP service as a FastAPI app (run it with uvicorn, or ``gpuseg serve``).

    Raises
    ------
    ValueError
        Bad settings.
    DeviceError
        ``settings.device`` is "gpu" and no CUDA device is usable.
    """
    service = Service(settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="gpuseg",
        version=__version__,
        summary="Segment images by clustering their pixels with exact DBSCAN, on CUDA GPUs and on CPUs.",
        lifespan=lifespan,
    )
    app.state.service = service
    _add_error_handlers(app)
    _add_metrics_middleware(app, service.metrics)
    from gpuseg.serve.page import page_router, sessions_router

    app.include_router(health_router)
    app.include_router(page_router)
    app.include_router(api_router, dependencies=[service.auth])
    app.include_router(sessions_router, dependencies=[service.auth])
    return app


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

health_router = APIRouter()
api_router = APIRouter()


@health_router.get("/v1/health", response_model=models.Health)
async def health() -> models.Health:
    """Alive: the server answers (while the device works, too)."""
    return models.Health(status="alive")


@api_router.get("/v1/ready", response_model=models.Ready, responses={503: {"model": models.Ready}})
async def ready(service: ServiceDep) -> Any:
    """Ready: the kernels are compiled and the device's worker runs; 503 until then."""
    if service.ready.is_set() and service.jobs is not None and service.jobs.alive():
        return models.Ready(status="ready")
    reason = service.not_ready_reason or "the device's worker stopped"
    return JSONResponse(models.Ready(status="not ready", reason=reason).model_dump(), status_code=503)


@api_router.get("/v1/info", response_model=models.Info)
async def info(service: ServiceDep) -> models.Info:
    """Versions, the device requests run on, the engines and the limits."""
    from importlib import metadata

    from gpuseg.device import gpu_status
    from gpuseg.engines import ENGINES

    libraries = {}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            libraries[name] = metadata.version(name)
    gpu_usable = gpu_status().usable
    engines = []
    for spec in ENGINES.values():
        missing = spec.why_missing()
        kinds = [k for k in spec.runners if k == "cpu" or gpu_usable]
        usable = f"no: {missing}" if missing else (", ".join(kinds) if kinds else "no: needs a GPU")
        engines.append(
            models.EngineInfo(name=spec.name, devices=list(spec.runners), usable=usable, summary=spec.summary)
        )
    s = service.settings
    return models.Info(
        gpuseg=__version__,
        python=platform.python_version(),
        libraries=libraries,
        device=service.device.kind,
        device_name=service.device.name,
        fallback_reason=service.device.fallback_reason,
        engines=engines,
        limits={"max_upload_bytes": s.max_upload_bytes, "max_pixels": s.max_pixels, "queue_size": s.queue_size,
                "timeout_s": s.timeout_s},
    )  # fmt: skip


@api_router.get("/metrics", response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics: requests by route and status, latency, queue depth, pixels clustered."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


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


@api_router.post(
    "/v1/segment",
    response_model=models.SegmentResponse,
    responses={
        **PROBLEMS,
        200: {"content": {"application/x-npy": {}}, "description": "JSON, or with ?format=npy the label map"},
    },
    openapi_extra=IMAGE_BODY,
)
async def segment_image(request: Request, service: ServiceDep, query: Annotated[models.SegmentQuery, Query()]) -> Any:
    """Segment an image: multipart field ``image`` (or the image as the whole body), in any format the command
    line reads. Answers the report and the 16-bit PNG label map (base64; 0 is noise, cluster k is k + 1), or
    with ``?format=npy`` the int32 label map (-1 noise) as a .npy body and the report in the X-Gpuseg-Report
    header."""
    from gpuseg.io import decode_image, encoded, npy_writer, png_writer
    from gpuseg.labels import labels_to_png
    from gpuseg.pipeline import segment

    settings = service.settings
    body = await read_body(request, settings.max_upload_bytes)
    data = await run_in_threadpool(upload_field, body, request.headers.get("content-type", ""), "image")
    del body
    check_image(data, settings.max_pixels)
    options, as_npy = query.segment_kwargs(), query.format == "npy"

    def job() -> tuple[dict, bytes]:
        image = decode_image(data, name="image", max_pixels=settings.max_pixels)
        result = segment(image, device=settings.device, max_pixels=settings.max_pixels, **options)
        writer = npy_writer(result.labels.astype(np.int32)) if as_npy else png_writer(labels_to_png(result.labels))
        service.metrics.pixels.inc(result.labels.size)
        return result.report, encoded(writer)

    report, payload = await service.run(job)
    if as_npy:
        header = json.dumps(jsonable_encoder(report), separators=(",", ":"))
        return Response(payload, media_type="application/x-npy", headers={REPORT_HEADER: header})
    return models.SegmentResponse(report=report, labels_png=base64.b64encode(payload).decode("ascii"))


@api_router.post(
    "/v1/cluster",
    response_model=models.ClusterResponse,
    responses=PROBLEMS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def cluster_rows(request: Request, service: ServiceDep, query: Annotated[models.ClusterQuery, Query()]) -> Any:
    """DBSCAN on feature rows: the body is a .npy array (N, F) or a CSV table (one sample per line, an optional
    header line). Answers one label per row (-1 noise), as ``gpuseg cluster`` writes them."""
    from gpuseg.cluster import cluster_features
    from gpuseg.features import points_features
    from gpuseg.points import points_from_bytes

    body = await read_body(request, service.settings.max_upload_bytes)
    if not body:
        raise ServiceError(422, "the body is empty; send a .npy array or a CSV table of feature rows")

    def job():
        rows = points_from_bytes(body, name="body")
        run = cluster_features(
            points_features(rows), eps=query.eps, min_samples=query.min_samples, device=service.settings.device,
            engine=query.engine,
        )  # fmt: skip
        service.metrics.samples.inc(run.labels.size)
        return run

    run = await service.run(job)
    labels = run.labels
    return models.ClusterResponse(
        labels=labels.tolist(),
        n_clusters=int(labels.max()) + 1 if labels.size else 0,
        noise_fraction=float((labels < 0).mean()) if labels.size else 0.0,
        engine=run.engine,
        device=run.device.kind,
    )


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with one sentence per problem: the parameter, the value given, what is wrong and what it takes."""
        problems, named = [], set()
        for error in exc.errors():
            loc = [str(part) for part in error.get("loc", ())]
            name = loc[1] if len(loc) > 1 and loc[0] in ("query", "path") else (loc[-1] if loc else "request")
            if name in named:  # a parameter of several types fails once per type: say it once
                continue
            named.add(name)
            given = f"={error['input']!r}" if isinstance(error.get("input"), str | int | float) else ""
            if error.get("type") == "extra_forbidden":
                known = ", ".join(_query_names(request))
                problems.append(f"{name}{given}: not a parameter of {request.url.path} (its parameters: {known})")
                continue
            hint = models.option_help(name)
            problems.append(f"{name}{given}: {error.get('msg', 'invalid')}" + (f" ({name}: {hint})" if hint else ""))
        return JSONResponse({"detail": "; ".join(problems), "errors": jsonable_encoder(exc.errors())}, status_code=422)


def _query_names(request: Request) -> list[str]:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    names = []
    for field in getattr(dependant, "query_params", []):
        model = getattr(field, "type_", None) or field.field_info.annotation
        names += list(getattr(model, "model_fields", None) or [field.alias])  # a model of query parameters: its fields
    return names


def _add_metrics_middleware(app: FastAPI, metrics: Metrics) -> None:
    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            metrics.observe(getattr(route, "path", "unmatched"), status, time.perf_counter() - start)
