"""The interactive page: ``GET /`` and the routes it calls to re-cluster one uploaded image live.

The page uploads its image once (``POST /v1/sessions``: decoded and kept in the :class:`SessionCache`), then
asks for a segmentation with new parameters at each move of a control (``GET /v1/sessions/{id}/segment``),
on a downscaled preview while a control is dragged (the same parameters on the smaller image: approximate
figures) and at full resolution once it is released. Every
clustering runs as a job of the service's device queue, like ``POST /v1/segment``, through the same
:func:`gpuseg.segment`.
"""

from __future__ import annotations

import base64
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import Field

from gpuseg.options import SegmentOptions
from gpuseg.params import COLOR_SPACES, PARAMS, AlphaMode, ColorSpace
from gpuseg.serve import models
from gpuseg.serve.errors import ServiceError
from gpuseg.serve.service import IMAGE_BODY, PROBLEMS, ServiceDep
from gpuseg.serve.sessions import SessionExpired
from gpuseg.serve.uploads import check_image, read_body, upload_field

CURVE_POINTS = 200
"""Points of the k-distance curve sent to the page."""
STATIC = {"page.js": "text/javascript", "page.css": "text/css"}

page_router = APIRouter()
"""``GET /`` and its files: no token needed (the page asks for one when the service does)."""
sessions_router = APIRouter()
"""The routes the page calls (behind the token, like the rest of the API)."""


class SessionAnswer(models.BaseModel):
    id: str
    name: str
    width: int
    height: int
    preview: list[int] | None = Field(description="[width, height] of the preview, or null for a small image")


class PageResult(models.BaseModel):
    n_clusters: int = Field(description="DBSCAN's clusters")
    shown_clusters: int = Field(description="clusters of the labels shown (after min_region)")
    noise_fraction: float = Field(description="DBSCAN's noise fraction (before any fill)")
    shown_noise_fraction: float = Field(description="noise fraction of the labels shown")
    cluster_s: float
    device: str
    engine: str
    preview: bool
    width: int
    height: int
    picture: str = Field(description="the picture asked for, as a data: URL (JPEG)")
    warnings: list[str]
    report: dict[str, Any] | None = Field(description="the full report (full resolution only)")
    labels_png: str | None = Field(description="base64 16-bit label PNG, 0 noise (full resolution only)")


class Curve(models.BaseModel):
    knee_eps: float
    k_distances: list[float] = Field(description=f"{CURVE_POINTS} points of the sorted k-distance curve")


@page_router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    """The page: drop an image, move eps, watch the regions (its controls start at the library's defaults)."""
    default = {name: PARAMS[name].default for name in ("eps", "min_samples", "xy_scale", "color")}
    colors = "".join(
        f'<option value="{c}"{" selected" if c == default["color"] else ""}>{c}</option>' for c in COLOR_SPACES
    )
    html = _static("index.html")
    for key, value in {
        "EPS": f"{default['eps']:g}",
        "MIN_SAMPLES": str(default["min_samples"]),
        "XY_SCALE": f"{default['xy_scale']:g}",
        "COLOR_OPTIONS": colors,
    }.items():
        html = html.replace("{{" + key + "}}", value)
    return HTMLResponse(html)


@page_router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    if name not in STATIC:
        raise ServiceError(404, f"no file {name!r} here")
    return Response(_static(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def _static(name: str) -> str:
    return resources.files("gpuseg.serve").joinpath("static", name).read_text(encoding="utf-8")


@sessions_router.post("/v1/sessions", response_model=SessionAnswer, responses=PROBLEMS, openapi_extra=IMAGE_BODY)
async def open_session(request: Request, service: ServiceDep) -> SessionAnswer:
    """Upload an image once for the page: decoded and kept (bounded, expiring) under the id answered."""
    from gpuseg.io.read import decode_image

    settings = service.settings
    body = await read_body(request, settings.max_upload_bytes)
    data = upload_field(body, request.headers.get("content-type", ""), "image")
    del body
    check_image(data, settings.max_pixels)
    name = _upload_name(request)

    def job():
        image = decode_image(data, name="image", max_pixels=settings.max_pixels)
        try:
            return service.sessions.add(image, name)
        except ValueError as exc:
            raise ServiceError(413, str(exc)) from None

    session = await service.run(job)
    h, w = session.image.shape[:2]
    preview = None if session.preview is None else [session.preview.shape[1], session.preview.shape[0]]
    return SessionAnswer(id=session.id, name=session.name, width=w, height=h, preview=preview)


def _upload_name(request: Request) -> str:
    """The uploaded file's name, as the page sends it in X-Filename (for the command it shows)."""
    name = request.headers.get("x-filename", "image.png")
    return "".join(c for c in name if c.isprintable() and c not in "/\\")[:200] or "image.png"


@sessions_router.get("/v1/sessions/{session_id}/segment", response_model=PageResult, responses=PROBLEMS)
async def segment_session(
    session_id: str, service: ServiceDep, query: Annotated[models.PageQuery, Query()]
) -> PageResult:
    """Segment the session's image (or its preview) with these parameters; answers the figures and the
    picture, and at full resolution the report and the label PNG."""
    session = _session(service, session_id)
    try:
        options = SegmentOptions(device=service.settings.device, **models.segment_kwargs(query))
    except ValueError as exc:
        raise ServiceError(422, str(exc)) from None

    def job() -> PageResult:
        from gpuseg.io.write import encoded, picture_writer, png_writer
        from gpuseg.segmentation.labels import labels_to_png
        from gpuseg.segmentation.pictures import picture
        from gpuseg.segmentation.pipeline import segment

        preview = query.preview and session.preview is not None
        # a preview is the downscaled image clustered with the same parameters: its figures are approximate
        # (scaling xy_scale and min_samples with the size instead was measured to give 10-30x the clusters)
        image = session.preview if preview else session.image
        features = service.sessions.features(
            session, options.color, options.alpha, preview, lambda: _features(image, options.color, options.alpha)
        )
        result = segment(image, options, features=features)
        service.metrics.pixels.inc(result.labels.size)
        report = result.report
        shown = report["postprocess"] or report  # the labels shown: after fill and merge, where asked
        labels_png = None
        if not preview:
            labels_png = base64.b64encode(encoded(png_writer(labels_to_png(result.labels)))).decode("ascii")
        return PageResult(
            n_clusters=report["n_clusters"], shown_clusters=shown["n_clusters"],
            noise_fraction=report["noise_fraction"], shown_noise_fraction=shown["noise_fraction"],
            cluster_s=report["timings_s"]["cluster"], device=report["device"], engine=report["engine"],
            preview=preview, width=image.shape[1], height=image.shape[0],
            picture="data:image/jpeg;base64,"
            + base64.b64encode(encoded(picture_writer(picture(query.view, image, result.labels), "jpg"))).decode(),
            warnings=report["warnings"], labels_png=labels_png,
            report=None if preview or report is None else dict(report),
        )  # fmt: skip

    return await service.run(job)


@sessions_router.get("/v1/sessions/{session_id}/k-distances", response_model=Curve, responses=PROBLEMS)
async def k_distance_curve(session_id: str, service: ServiceDep, query: Annotated[models.CurveQuery, Query()]) -> Curve:
    """The sorted k-distance curve (k = min_samples) of the session's image and its knee, for the page's plot."""
    session = _session(service, session_id)
    options = models.segment_kwargs(query)

    def job() -> Curve:
        from dataclasses import replace

        import numpy as np

        from gpuseg.tuning.suggest import k_distances, knee_index

        features = service.sessions.features(
            session, options["color"], options["alpha"], False,
            lambda: _features(session.image, options["color"], options["alpha"]),
        )  # fmt: skip
        features = replace(features, xy_scale=options["xy_scale"])
        curve = k_distances(features, options["min_samples"]).distances
        points = curve[np.linspace(0, curve.shape[0] - 1, min(CURVE_POINTS, curve.shape[0])).astype(int)]
        return Curve(knee_eps=float(curve[knee_index(curve)]), k_distances=[float(d) for d in points])

    return await service.run(job)


def _session(service, session_id: str):
    try:
        return service.sessions.get(session_id)
    except SessionExpired:
        raise ServiceError(
            404, f"no image is kept under id {session_id!r} (it expired or made room for others); upload it again"
        ) from None


def _features(image, color: ColorSpace, alpha: AlphaMode):
    """Colour features of an image, without position (each request sets its own xy_scale)."""
    from gpuseg.features import build_features

    return build_features(image, color=color, alpha=alpha, xy_scale=None)
