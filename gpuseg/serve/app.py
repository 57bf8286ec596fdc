"""The FastAPI app: settings, the app factory, its lifespan and its routes.

Handlers check what is cheap to check on the event loop (body size, image header, parameters) and hand the
rest (decoding, clustering, encoding) to the device's :class:`~gpuseg.serve.jobs.JobQueue` as one job, whose
future they await. Every route is under ``/v1`` except ``/metrics``; routes other than health need the bearer
token when one is set. More routes can be added with ``app.include_router(router, dependencies=[auth])``, where
``auth = app.state.service.auth``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import platform
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gpuseg._core.version import __version__
from gpuseg.options import SegmentOptions
from gpuseg.segmentation.report import Report
from gpuseg.serve import models
from gpuseg.serve.errors import ServiceError
from gpuseg.serve.metrics import Metrics
from gpuseg.serve.page import page_router, sessions_router
from gpuseg.serve.service import IMAGE_BODY, LIBRARIES, PROBLEMS, REPORT_HEADER, Service, ServiceDep, Settings
from gpuseg.serve.uploads import check_image, read_body, upload_field


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
    app.include_router(health_router)
    app.include_router(page_router)
    app.include_router(api_router, dependencies=[service.auth])
    app.include_router(sessions_router, dependencies=[service.auth])
    return app


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

    from gpuseg._core.device import gpu_status
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
    from gpuseg.io.read import decode_image
    from gpuseg.io.write import encoded, npy_writer, png_writer
    from gpuseg.segmentation.labels import labels_to_png
    from gpuseg.segmentation.pipeline import segment

    settings = service.settings
    body = await read_body(request, settings.max_upload_bytes)
    data = await run_in_threadpool(upload_field, body, request.headers.get("content-type", ""), "image")
    del body
    check_image(data, settings.max_pixels)
    try:  # the options together (target_noise needs eps=auto), before any work
        kwargs = models.segment_kwargs(query)
        options = SegmentOptions(device=settings.device, max_pixels=settings.max_pixels, **kwargs)
    except ValueError as exc:
        raise ServiceError(422, str(exc)) from None
    as_npy = query.format == "npy"

    def job() -> tuple[Report, bytes]:
        image = decode_image(data, name="image", max_pixels=settings.max_pixels)
        result = segment(image, options)
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
    from gpuseg.engines.run import cluster_features
    from gpuseg.features import points_features
    from gpuseg.io.points import points_from_bytes

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
            message = error.get("msg", "invalid")
            if error.get("type") == "value_error":  # the table's own sentence: the name, the value, what it takes
                problems.append(str(error.get("ctx", {}).get("error", message.removeprefix("Value error, "))))
            else:
                problems.append(f"{name}{given}: {message}")
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
