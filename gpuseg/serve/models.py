"""The service's typed parameters and answers.

:class:`SegmentOptions` holds the options of :func:`gpuseg.segment` that a request may set, one field each,
named and defaulted as the library's keywords: a new option of ``segment()`` is one more field here.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpuseg.engines import ENGINE_NAMES
from gpuseg.features import ALPHA_MODES, COLOR_SPACES
from gpuseg.pipeline import DEFAULT_COLOR, DEFAULT_EPS, DEFAULT_MIN_SAMPLES, DEFAULT_XY_SCALE, NOISE_MODES


class SegmentOptions(BaseModel):
    """Query parameters of ``POST /v1/segment`` passed to :func:`gpuseg.segment` as they are."""

    model_config = ConfigDict(extra="forbid")

    eps: float | Literal["auto"] = Field(
        DEFAULT_EPS, description="DBSCAN radius in feature units, e.g. 0.055, or auto: the eps for target_noise"
    )
    min_samples: int = Field(DEFAULT_MIN_SAMPLES, ge=1, description="neighbourhood weight of a core pixel, e.g. 20")
    color: Literal[COLOR_SPACES] = Field(DEFAULT_COLOR, description=f"colour features: {', '.join(COLOR_SPACES)}")
    alpha: Literal[ALPHA_MODES] = Field("ignore", description=f"an alpha channel: {', '.join(ALPHA_MODES)}")
    xy_scale: float = Field(
        DEFAULT_XY_SCALE, ge=0, allow_inf_nan=False, description="position features x*s, y*s; 0 for colour only"
    )
    engine: Literal[ENGINE_NAMES] = Field("auto", description=f"one of {', '.join(ENGINE_NAMES)}")
    target_noise: float | None = Field(
        None, ge=0, lt=1, allow_inf_nan=False, description="noise fraction eps=auto aims at, e.g. 0.1 (with eps=auto)"
    )
    noise: Literal[NOISE_MODES] = Field("keep", description="fill: noise pixels take the nearest cluster")
    min_region: int = Field(0, ge=0, description="regions smaller than this many pixels join a neighbour")

    @field_validator("eps")
    @classmethod
    def _positive_eps(cls, eps):
        if eps != "auto" and not (math.isfinite(eps) and eps > 0):
            raise ValueError("eps must be a positive number, such as 0.055, or auto")
        return eps

    def segment_kwargs(self) -> dict[str, Any]:
        """The keywords of :func:`gpuseg.segment` (every field of this class, none of its subclasses')."""
        return self.model_dump(include=set(SegmentOptions.model_fields))


class SegmentQuery(SegmentOptions):
    """All the query parameters of ``POST /v1/segment``: the options and the answer's format."""

    format: Literal["json", "npy"] = Field(
        "json", description="json: report and base64 label PNG; npy: the int32 label map, report in a header"
    )


class ClusterQuery(BaseModel):
    """Query parameters of ``POST /v1/cluster`` (see :func:`gpuseg.dbscan`)."""

    model_config = ConfigDict(extra="forbid")

    eps: float = Field(gt=0, allow_inf_nan=False, description="DBSCAN radius in the features' units")
    min_samples: int = Field(ge=1, description="neighbourhood weight of a core sample")
    engine: Literal[ENGINE_NAMES] = Field("auto", description=f"one of {', '.join(ENGINE_NAMES)}")


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


def option_help(name: str) -> str | None:
    """The description of a query parameter, for error messages."""
    for model in (SegmentQuery, ClusterQuery):
        field = model.model_fields.get(name)
        if field is not None:
            return field.description
    return None
