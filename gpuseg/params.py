"""The one table of gpuseg's parameters.

Every value a user can set, in Python, on the command line, over HTTP or on the page, is one row of
:data:`PARAMS`: its name, default, the values it takes (its rule), its help text and the surfaces that take it.
The library's checks, the command line's options and the service's query models are all made from these rows
(in the manner of scikit-learn's ``_parameter_constraints``), so a value is accepted or refused, in the same
words, everywhere: a ValueError in Python, exit code 2 on the command line, 422 over HTTP.

Numbers are bounded so that every computation on them stays finite: a distance in [1e-100, 1e100] has a
finite, non-zero square, and counts stay below 2**53, where float64 sums of weights are still exact.

Examples
--------
>>> PARAMS["min_samples"].check(20)
20
>>> PARAMS["eps"].parse("auto")
'auto'
>>> PARAMS["eps"].check(-1.0)
Traceback (most recent call last):
    ...
ValueError: eps=-1.0 must be a positive finite number from 1e-100 to 1e+100 (feature units), such as 0.055, or auto
>>> PARAMS["xy_scale"].parse("0") is None  # colour only
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal, get_args

# ------------------------------------------------------------------------------------------------ choices

ColorSpace = Literal["rgb", "lab", "gray"]
AlphaMode = Literal["ignore", "feature", "mask"]
DeviceName = Literal["auto", "cpu", "gpu"]
EngineName = Literal["auto", "grid", "cells", "tree", "sklearn", "sklearn-merged", "cuml"]
NoiseMode = Literal["keep", "fill"]
PictureName = Literal["overlay", "mean", "boundaries", "noise"]
PictureFormat = Literal["jpg", "png", "webp"]

COLOR_SPACES: tuple[str, ...] = get_args(ColorSpace)
ALPHA_MODES: tuple[str, ...] = get_args(AlphaMode)
DEVICES: tuple[str, ...] = get_args(DeviceName)
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)
"""``auto`` and the engines of :data:`gpuseg.engines.ENGINES`, in that order."""
NOISE_MODES: tuple[str, ...] = get_args(NoiseMode)
"""What to do with noise pixels: keep them as -1 (DBSCAN's answer) or give each the nearest cluster."""
PICTURES: tuple[str, ...] = get_args(PictureName)
"""The pictures of a segmentation that can be written, as ``<stem>.<name>.<format>``."""
PICTURE_FORMATS: tuple[str, ...] = get_args(PictureFormat)
ANSWER_FORMATS: tuple[str, ...] = ("json", "npy")

# ----------------------------------------------------------------------------------------------- defaults

DEFAULT_TARGET_NOISE = 0.1
"""The noise fraction ``eps="auto"`` aims at when no ``target_noise`` is given."""
DEFAULT_MAX_PIXELS = 2**28
"""Largest image (width * height) decoded whole unless ``max_pixels`` says otherwise. Images read in chunks
(TIFF, Zarr) have no limit but ``max_pixels``."""
DEFAULT_CHUNK = 2048
"""Pixels a side of a chunk when none is asked for."""
MAX_COUNT = 2**53
"""Counts (min_samples, pixels) stay below this: float64 sums of unit weights are exact up to it."""
MAX_BYTES = 2**62
GIANT_CLUSTER = 0.9
"""A cluster holding more than this share of the samples is no segmentation: the report warns, and the
colour-only suggestion avoids such an eps."""

SURFACES = frozenset({"python", "cli", "http", "page"})
"""Where a parameter can be set: the Python API, the command line, the HTTP API, the interactive page."""
EVERYWHERE = SURFACES
LIBRARY_AND_CLI = frozenset({"python", "cli"})


# -------------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Number:
    """A finite real number in [low, high] (``low`` excluded when ``open_low``, ``high`` when ``open_high``);
    ``zero_is_none`` also takes 0 and None, which mean "none" (the result is None); ``optional`` None; ``auto``
    also takes "auto"."""

    low: float
    high: float
    words: str
    open_low: bool = False
    open_high: bool = False
    zero_is_none: bool = False
    auto: bool = False
    optional: bool = False
    kind = "number"

    def accept(self, value: Any) -> Any:
        if self.auto and isinstance(value, str) and value == "auto":
            return "auto"
        if (self.zero_is_none or self.optional) and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError
        number = float(value)
        if self.zero_is_none and number == 0:
            return None
        below = number <= self.low if self.open_low else number < self.low
        above = number >= self.high if self.open_high else number > self.high
        if not math.isfinite(number) or below or above:
            raise ValueError
        return number

    def from_text(self, text: str) -> Any:
        text = text.strip()
        if self.auto and text.lower() == "auto":
            return "auto"
        try:
            return float(text)
        except ValueError:
            return text


@dataclass(frozen=True)
class Integer:
    """A whole number (not a bool, not a float) in [low, high]; None too when ``optional``."""

    low: int
    high: int
    words: str
    optional: bool = False
    kind = "integer"

    def accept(self, value: Any) -> Any:
        if self.optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise TypeError
        if not self.low <= int(value) <= self.high:
            raise ValueError
        return int(value)

    def from_text(self, text: str) -> Any:
        text = text.strip()
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else text


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class Bytes(Integer):
    """A memory size in bytes; as text also with a unit: 512M, 16G, 1.5T (powers of 1024), or 8e9."""

    def from_text(self, text: str) -> Any:
        clean = text.strip().upper().removesuffix("IB").removesuffix("B")
        unit = clean[-1:] if clean[-1:] in _UNITS and clean[-1:] else ""
        try:
            size = float(clean[: len(clean) - len(unit)]) * _UNITS[unit]
        except ValueError:
            return text
        return int(size) if math.isfinite(size) and size == int(size) else size


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (strings)."""

    options: tuple[str, ...]
    kind = "choice"

    @property
    def words(self) -> str:
        return "one of " + ", ".join(self.options)

    def accept(self, value: Any) -> Any:
        if not isinstance(value, str) or value not in self.options:
            raise ValueError
        return value

    def from_text(self, text: str) -> Any:
        return text.strip()


@dataclass(frozen=True)
class Names:
    """Any of ``options``, as a tuple (as text: separated by commas; ``none`` for none)."""

    options: tuple[str, ...]
    kind = "names"

    @property
    def words(self) -> str:
        return f"any of {', '.join(self.options)} (separated by commas), or none"

    def accept(self, value: Any) -> Any:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise TypeError
        names = tuple(value)
        if any(not isinstance(n, str) or n not in self.options for n in names) or len(set(names)) < len(names):
            raise ValueError
        return names

    def from_text(self, text: str) -> Any:
        names = [n.strip() for n in text.split(",") if n.strip()]
        return () if names in ([], ["none"]) else tuple(names)


@dataclass(frozen=True)
class Flag:
    """True or False."""

    words: str = "True or False"
    kind = "flag"

    def accept(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise TypeError
        return value

    def from_text(self, text: str) -> Any:
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
            text.strip().lower(), text
        )


SCHEDULER_FORMS = "local, local:N, local-cuda or tcp://HOST:PORT"
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/:]+(:\d+)?/?$")


@dataclass(frozen=True)
class Scheduler:
    """A Dask scheduler: ``local`` or ``local:N`` (a local cluster of N worker processes), ``local-cuda`` (a
    worker per GPU) or the address of a running scheduler."""

    words: str = f"one of {SCHEDULER_FORMS} (N a whole number >= 1)"
    kind = "text"

    def accept(self, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError
        text = value.strip()
        n = text.removeprefix("local:")
        if text in ("local", "local-cuda") or _ADDRESS.match(text) or (n != text and n.isdigit() and int(n) >= 1):
            return text
        raise ValueError

    def from_text(self, text: str) -> Any:
        return text


def parse_scheduler(text: str) -> tuple[str, Any]:
    """(``"local"``, workers or None), (``"local-cuda"``, None) or (``"address"``, the address) of a scheduler.

    Raises
    ------
    ValueError
        Not one of the forms (the message lists them).

    Examples
    --------
    >>> parse_scheduler("local:2")
    ('local', 2)
    >>> parse_scheduler("tcp://10.0.0.1:8786")
    ('address', 'tcp://10.0.0.1:8786')
    """
    text = PARAMS["scheduler"].check(text)
    if text.startswith("local:"):
        return "local", int(text[len("local:") :])
    if text in ("local", "local-cuda"):
        return text, None
    return "address", text


Rule = Number | Integer | Bytes | Choice | Names | Flag | Scheduler

# -------------------------------------------------------------------------------------------------- a row


@dataclass(frozen=True)
class Param:
    """One parameter: its ``name`` (a keyword in Python and over HTTP, ``--name-with-dashes`` on the command
    line), the ``rule`` of the values it takes, its ``default``, ``help`` text and ``surfaces``."""

    name: str
    rule: Rule
    default: Any
    help: str
    surfaces: frozenset[str] = EVERYWHERE
    example: str | None = None
    metavar: str | None = None
    option: str | None = None

    @property
    def flag(self) -> str:
        """The command line's option: ``--min-samples`` for ``min_samples`` (unless ``option`` names another)."""
        return self.option or "--" + self.name.replace("_", "-")

    @property
    def words(self) -> str:
        """What the parameter takes, in words: "a positive finite number ..., such as 0.055"."""
        return (
            self.rule.words
            + (f", such as {self.example}" if self.example else "")
            + (", or auto" if isinstance(self.rule, Number) and self.rule.auto else "")
        )

    def check(self, value: Any, *, shown: str | None = None) -> Any:
        """``value`` as the library uses it (a float, an int, a tuple...), or ValueError naming the
        parameter, the value (``shown``, else its repr) and what it takes."""
        try:
            return self.rule.accept(value)
        except TypeError:
            wrong_type = shown is None
        except ValueError:
            wrong_type = False
        given = f"{self.name}={shown if shown is not None else repr(value)}"
        kind = f" (not a {type(value).__name__})" if wrong_type else ""
        if isinstance(self.rule, Choice):
            raise ValueError(f"{given} is not {self.words}{kind}") from None
        raise ValueError(f"{given} must be {self.words}{kind}") from None

    def parse(self, text: Any) -> Any:
        """A value given as text (the command line, a query string) checked as :meth:`check` does, the message
        showing the text as it was given; values that are not text are checked as they are."""
        if not isinstance(text, str):
            return self.check(text)
        return self.check(self.rule.from_text(text), shown=repr(text))


def _table(*rows: Param) -> dict[str, Param]:
    return {row.name: row for row in rows}


DISTANCE = "a positive finite number from 1e-100 to 1e+100 (feature units)"

PARAMS: Mapping[str, Param] = _table(
    # what segment() does: the options of SegmentOptions
    Param(
        "eps", Number(1e-100, 1e100, DISTANCE, open_low=True, auto=True), 0.055,
        "DBSCAN radius in feature units (colours in [0, 1]), or auto: the eps for target_noise.",
        example="0.055", metavar="FLOAT|auto",
    ),
    Param(
        "min_samples", Integer(1, MAX_COUNT, f"an integer >= 1 and <= {MAX_COUNT:,}"), 20,
        "Neighbourhood weight (the sample itself included) that makes a core sample.", example="20",
        metavar="INTEGER",
    ),
    Param("color", Choice(COLOR_SPACES), "lab", "Colour features: channels in [0, 1], CIE Lab / 100, or luma."),
    Param("alpha", Choice(ALPHA_MODES), "ignore", "An alpha channel: dropped, a feature, or a mask of samples."),
    Param(
        "xy_scale",
        Number(1e-100, 1e100, "0 (colour only) or a positive finite number from 1e-100 to 1e+100", zero_is_none=True),
        0.01, "Position features x*s, y*s; 0 for colour only.", example="0.01", metavar="FLOAT",
    ),
    Param("device", Choice(DEVICES), "auto", "Where to cluster; auto: a CUDA GPU when there is one.",
          surfaces=LIBRARY_AND_CLI),
    Param("engine", Choice(ENGINE_NAMES), "auto", "How to cluster; auto: gpuseg's exact engine for the input."),
    Param(
        "target_noise", Number(0.0, 1.0, "a fraction in [0, 1)", open_high=True, optional=True), None,
        f"Noise fraction that eps auto aims at (default {DEFAULT_TARGET_NOISE:g}).", example="0.1 (10% noise)",
        metavar="FRACTION",
    ),
    Param("noise", Choice(NOISE_MODES), "keep",
          "fill: give each noise pixel the cluster of the nearest clustered pixel."),
    Param(
        "min_region", Integer(0, MAX_COUNT, f"an integer >= 0 and <= {MAX_COUNT:,}"), 0,
        "Regions smaller than this (pixels) join the neighbour they share the longest border with; 0 keeps them.",
        example="50 (pixels; 0 merges nothing)", metavar="PIXELS",
    ),
    Param(
        "max_pixels", Integer(1, MAX_COUNT, f"an integer >= 1 and <= {MAX_COUNT:,}", optional=True), None,
        f"Refuse images with more pixels than this, whatever their format (default: {DEFAULT_MAX_PIXELS:,} for "
        "images decoded whole; TIFF and Zarr too large for memory are segmented in chunks).",
        example=f"{DEFAULT_MAX_PIXELS}", surfaces=LIBRARY_AND_CLI, metavar="PIXELS",
    ),
    Param(
        "max_memory", Bytes(1, MAX_BYTES, "a size in bytes >= 1 (16G, 512M, 8e9)", optional=True), None,
        "Refuse runs predicted to need more memory than this, e.g. 16G (default: what is available).",
        surfaces=LIBRARY_AND_CLI, metavar="SIZE",
    ),
    # what a run writes and how it runs
    Param("pictures", Names(PICTURES), ("overlay",),
          "Pictures to write: any of overlay,mean,boundaries,noise (or none).", surfaces=LIBRARY_AND_CLI,
          metavar="NAMES", option="--save"),
    Param("picture_format", Choice(PICTURE_FORMATS), "jpg", "Format of the pictures; label maps stay lossless.",
          surfaces=LIBRARY_AND_CLI),
    Param("explain", Flag(), False, "Also write <stem>.explain.<format>: input, colour only, + position, noise.",
          surfaces=LIBRARY_AND_CLI),
    Param("overwrite", Flag(), False, "Replace existing outputs.", surfaces=LIBRARY_AND_CLI),
    Param(
        "chunk", Integer(1, 2**31, "a whole number of pixels a side >= 1", optional=True), None,
        "Segment each image in chunks of N pixels a side, exactly (labels as <stem>.labels.zarr); automatic for a "
        "TIFF or Zarr that would not fit in memory.", example=f"{DEFAULT_CHUNK}", surfaces=LIBRARY_AND_CLI,
        metavar="PIXELS",
    ),
    Param(
        "jobs", Integer(1, 1024, "an integer from 1 to 1024", optional=True), None,
        "Threads decoding and threads writing (default: the cores, at most 8).", surfaces=LIBRARY_AND_CLI,
        metavar="THREADS",
    ),
    Param(
        "scheduler", Scheduler(), None,
        "Run on Dask: local[:N] (N worker processes), local-cuda (a worker per GPU) or tcp://HOST:PORT.",
        surfaces=LIBRARY_AND_CLI, metavar="SCHEDULER",
    ),
    # the service's answers and the page's pictures
    Param("format", Choice(ANSWER_FORMATS), "json",
          "json: report and base64 label PNG; npy: the int32 label map, report in a header.",
          surfaces=frozenset({"http"})),
    Param("view", Choice(PICTURES), "overlay", f"The picture answered: {', '.join(PICTURES)}.",
          surfaces=frozenset({"page"})),
    Param("preview", Flag(), False, "Cluster the downscaled preview (a large image, while dragging).",
          surfaces=frozenset({"page"})),
)  # fmt: skip
"""Every parameter, by name."""


def check(name: str, value: Any) -> Any:
    """``PARAMS[name].check(value)``: the value as the library uses it, or a ValueError that names the
    parameter, the value and what it takes.

    Examples
    --------
    >>> check("color", "rgb")
    'rgb'
    >>> check("min_region", 2**70)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: min_region=1180591620717411303424 must be an integer >= 0 and <= 9,007,199,254,740,992, ...
    """
    return PARAMS[name].check(value)


def distance_or_refuse(name: str, value: Any) -> float:
    """A parameter that must be a distance here (not "auto"): ``eps`` of :func:`gpuseg.dbscan`, say."""
    value = check(name, value)
    if value == "auto":
        raise ValueError(
            f"{name}='auto' chooses eps from an image's noise: use it with gpuseg.segment, or give a distance"
        )
    return value


def names_pattern() -> str:
    """A regular expression alternative of every parameter name (for rewriting messages)."""
    return "|".join(sorted(PARAMS, key=len, reverse=True))
