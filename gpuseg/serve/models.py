"""The service's query models, made from :data:`gpuseg.params.PARAMS`, and its answers.

Every query parameter is a row of the table, parsed by :meth:`gpuseg.params.Param.parse`: a value is taken or
refused (422, with the library's message) exactly as in Python and on the command line, on every route.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, create_model

from gpuseg.params import PARAMS, Choice, Flag, Integer, Number, Param, distance_or_refuse


def _schema(param: Param) -> dict[str, Any]:
    """The OpenAPI schema of a parameter (what /docs shows)."""
    rule = param.rule
    if isinstance(rule, Choice):
        return {"type": "string", "enum": list(rule.options)}
    if isinstance(rule, Flag):
        return {"type": "boolean"}
    if isinstance(rule, Integer):
        return {"type": "integer", "minimum": rule.low, "maximum": rule.high}
    if isinstance(rule, Number):
        number = {"type": "number", "minimum": 0 if rule.zero_is_none else rule.low, "maximum": rule.high}
        return {"anyOf": [number, {"const": "auto"}]} if rule.auto else number
    return {"type": "string"}


def field(name: str, *, required: bool = False, distance: bool = False) -> tuple[Any, Any]:
    """A query field for the table's row ``name``: parsed and checked as the library checks it."""
    param = PARAMS[name]
    parse = (lambda v: distance_or_refuse(name, param.parse(v))) if distance else param.parse
    annotation = Annotated[Any, BeforeValidator(parse), WithJsonSchema(_schema(param))]
    return annotation, Field(... if required else param.default, description=param.words + ". " + param.help)


def query_model(name: str, doc: str, *fields: str, base: type[BaseModel] | None = None, **made: Any) -> Any:
    """A model of query parameters: the rows ``fields`` (and ``made``: name -> :func:`field`), extras refused."""
    config = None if base is not None else ConfigDict(extra="forbid")
    model = create_model(name, __base__=base, __config__=config, __doc__=doc, **{n: field(n) for n in fields}, **made)  # type: ignore[call-overload]
    return model


OPTION_NAMES = ("eps", "min_samples", "color", "alpha", "xy_scale", "engine", "target_noise", "noise", "min_region")
"""The options of :class:`gpuseg.SegmentOptions` a request may set (the device and limits are the service's)."""

SegmentOptions = query_model("SegmentOptions", "The options of gpuseg.segment() a request may set.", *OPTION_NAMES)
SegmentQuery = query_model(
    "SegmentQuery", "All the query parameters of POST /v1/segment: the options and the answer's format.",
    "format", base=SegmentOptions,
)  # fmt: skip
ClusterQuery = query_model(
    "ClusterQuery", "Query parameters of POST /v1/cluster (see gpuseg.dbscan).", "engine",
    eps=field("eps", required=True, distance=True), min_samples=field("min_samples", required=True),
)  # fmt: skip

PageQuery = query_model(
    "PageQuery", "Query parameters of GET /v1/sessions/{id}/segment: the options, the picture and the resolution.",
    "view", "preview", base=SegmentOptions,
)  # fmt: skip
CurveQuery = query_model(
    "CurveQuery", "Query parameters of GET /v1/sessions/{id}/k-distances (eps is not used).", base=SegmentOptions
)


def segment_kwargs(query: BaseModel) -> dict[str, Any]:
    """The options of :func:`gpuseg.segment` in a query (none of its other parameters)."""
    return {name: getattr(query, name) for name in OPTION_NAMES}


class SegmentResponse(BaseModel):
    report: dict[str, Any] = Field(description="the report of gpuseg.segment(), as the library gives it")
    labels_png: str = Field(description="base64 of the 16-bit PNG label map: 0 is noise, cluster k is k + 1")


class ClusterResponse(BaseModel):
    labels: list[int] = Field(description="one label per row: -1 noise, clusters 0, 1, ...")
    n_clusters: int
    noise_fraction: float
    engine: str
    device: str


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    reason: str | None = None


class EngineInfo(BaseModel):
    name: str
    devices: list[str]
    usable: str
    summary: str


class Info(BaseModel):
    gpuseg: str
    python: str
    libraries: dict[str, str]
    device: str
    device_name: str
    fallback_reason: str | None
    engines: list[EngineInfo]
    limits: dict[str, int | float]


class Problem(BaseModel):
    detail: str = Field(description="what is wrong and how to fix it")
