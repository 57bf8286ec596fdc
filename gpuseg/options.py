"""The options of a segmentation and of what a run writes: frozen, picklable dataclasses, checked when made.

One :class:`SegmentOptions` travels unchanged from the caller through :func:`gpuseg.segment`, the folder
pipeline, Dask tasks, chunked runs and the service; each field is a row of :data:`gpuseg.params.PARAMS` (its
default, its rule and its message).

Examples
--------
>>> options = SegmentOptions(eps=0.04, min_samples=10)
>>> options.replace(color="rgb").color
'rgb'
>>> SegmentOptions(target_noise=0.2)
Traceback (most recent call last):
    ...
ValueError: target_noise=0.2 chooses eps: use it with eps='auto', or drop it
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Literal

from gpuseg.params import (
    DEFAULT_TARGET_NOISE,
    PARAMS,
    AlphaMode,
    ColorSpace,
    DeviceName,
    EngineName,
    NoiseMode,
    PictureFormat,
)


def _default(name: str) -> Any:
    return PARAMS[name].default


class _Checked:
    """Every field checked by its row of the table when the object is made (a frozen dataclass's fields are
    set once, here, to the checked value: 0 for ``xy_scale`` becomes None, a NumPy integer an int)."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, PARAMS[f.name].check(getattr(self, f.name)))

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (checked like the fields given when made)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (the keywords of :func:`gpuseg.segment`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]


@dataclass(frozen=True)
class SegmentOptions(_Checked):
    """How :func:`gpuseg.segment` segments an image.

    Attributes
    ----------
    eps : float or "auto"
        DBSCAN's radius in feature units (colours in [0, 1], positions times ``xy_scale``); "auto" searches for
        the eps whose noise fraction is closest to ``target_noise``.
    min_samples : int
        Weight of an eps-neighbourhood, the pixel itself included, that makes a core pixel.
    color : {"lab", "rgb", "gray"}
        Colour features: CIE Lab / 100, channels in [0, 1], or luma.
    alpha : {"ignore", "feature", "mask"}
        An alpha channel: dropped, a fourth colour column, or a mask of the samples.
    xy_scale : float or None
        Position features ``x * xy_scale``, ``y * xy_scale``; None (or 0) for colour only.
    device : {"auto", "cpu", "gpu"}
        Where to cluster; "auto" uses a CUDA GPU when there is one.
    engine : str
        One of :data:`gpuseg.params.ENGINE_NAMES`; "auto" picks gpuseg's exact engine for the input.
    target_noise : float or None
        The noise fraction ``eps="auto"`` aims at (default 0.1); only with ``eps="auto"``.
    noise : {"keep", "fill"}
        "fill" gives every noise pixel the cluster of the nearest clustered pixel.
    min_region : int
        Regions (4-connected pixels of one cluster) smaller than this join the neighbouring region they
        share the longest border with; 0 keeps them.
    max_pixels : int or None
        Refuse images with more pixels than this, whatever their format (None: 2**28 for images decoded whole;
        TIFF and Zarr images too large for memory are segmented in chunks).
    max_memory : int or None
        Refuse, before any work, a run predicted to need more bytes than this (None: what is available).

    Raises
    ------
    ValueError
        A value the table refuses (the message names it, the value and what it takes), or ``target_noise``
        without ``eps="auto"``.
    """

    eps: float | Literal["auto"] = _default("eps")
    min_samples: int = _default("min_samples")
    color: ColorSpace = _default("color")
    alpha: AlphaMode = _default("alpha")
    xy_scale: float | None = _default("xy_scale")
    device: DeviceName = _default("device")
    engine: EngineName = _default("engine")
    target_noise: float | None = _default("target_noise")
    noise: NoiseMode = _default("noise")
    min_region: int = _default("min_region")
    max_pixels: int | None = _default("max_pixels")
    max_memory: int | None = _default("max_memory")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target_noise is not None and self.eps != "auto":
            raise ValueError(f"target_noise={self.target_noise!r} chooses eps: use it with eps='auto', or drop it")

    @property
    def auto_eps(self) -> bool:
        return self.eps == "auto"

    @property
    def noise_target(self) -> float:
        """The noise fraction ``eps="auto"`` aims at."""
        return DEFAULT_TARGET_NOISE if self.target_noise is None else self.target_noise

    def whole_image_only(self) -> list[str]:
        """The options set here that need the whole image in memory (not a chunked run), in words."""
        asked = [("eps='auto'", self.auto_eps), ("noise='fill'", self.noise != "keep"),
                 (f"min_region={self.min_region}", self.min_region > 1)]  # fmt: skip
        return [words for words, on in asked if on]

    @classmethod
    def of(cls, options: SegmentOptions | None = None, **changes: Any) -> SegmentOptions:
        """``options`` (default: the defaults) with ``changes``; an unknown keyword is a TypeError naming it."""
        unknown = sorted(set(changes) - set(cls.names()))
        if unknown:
            raise TypeError(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; the options are "
                f"{', '.join(cls.names())}"
            )
        base = options if options is not None else cls()
        return base.replace(**changes) if changes else base


@dataclass(frozen=True)
class OutputOptions(_Checked):
    """What a run writes for each image beside its label maps and report.

    Attributes
    ----------
    pictures : tuple of str
        Any of "overlay", "mean", "boundaries", "noise".
    picture_format : {"jpg", "png", "webp"}
        The pictures' format (label maps stay lossless).
    explain : bool
        Also write ``<stem>.explain.<format>``: the input, colour only, colour + position, and the noise.
    overwrite : bool
        Replace existing outputs (else an existing output is an error, or skipped with ``skip_existing``).
    """

    pictures: tuple[str, ...] = _default("pictures")
    picture_format: PictureFormat = _default("picture_format")
    explain: bool = _default("explain")
    overwrite: bool = _default("overwrite")
