"""segment(): load -> features -> cluster -> labels -> report, and writing its outputs."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gpuseg import __version__
from gpuseg.arrays import array_module, to_host
from gpuseg.cluster import check_parameters, cluster_features
from gpuseg.features import AlphaMode, ColorSpace, Features, build_features
from gpuseg.io import DEFAULT_MAX_PIXELS, OutputSet, json_writer, load_image, npy_writer, png_writer, stage_all
from gpuseg.labels import check_png_labels, labels_to_png, overlay, to_rgb8
from gpuseg.report import GIANT_CLUSTER, REPORT_KEYS, STAGES, StageTimer, cluster_summary

DEFAULT_EPS = 0.055
DEFAULT_MIN_SAMPLES = 20
DEFAULT_COLOR: ColorSpace = "lab"
DEFAULT_XY_SCALE = 0.01
TARGET_MISSED = 0.03
"""eps="auto" warns when the noise it ends at is further than this from the target."""
DEFAULT_TARGET_NOISE = 0.1
"""The noise fraction ``eps="auto"`` aims at when no ``target_noise`` is given."""
NOISE_MODES = ("keep", "fill")
"""What to do with noise pixels: keep them as -1 (DBSCAN's answer) or give each the nearest cluster."""
OUTPUT_SUFFIXES = (".labels.npy", ".labels.png", ".overlay.jpg", ".json")


@dataclass
class SegmentResult:
    """The outcome of :func:`segment`: ``labels`` (H, W) int64 (-1 noise or not a sample), the ``image``,
    the ``features`` used (``features.matrix()`` gives the rows) and the ``report`` (JSON-serialisable).
    When ``noise="fill"`` or ``min_region`` changed the labels, ``dbscan_labels`` holds DBSCAN's own (else
    None: ``labels`` are DBSCAN's)."""

    labels: np.ndarray
    image: np.ndarray
    features: Features
    report: dict[str, Any] = field(default_factory=dict)
    dbscan_labels: np.ndarray | None = None


def segment(
    image_or_path: np.ndarray | str | os.PathLike[str],
    *,
    eps: float | Literal["auto"] = DEFAULT_EPS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    color: ColorSpace = DEFAULT_COLOR,
    alpha: AlphaMode = "ignore",
    xy_scale: float | None = DEFAULT_XY_SCALE,
    device: str = "auto",
    engine: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_memory: int | None = None,
    truth: np.ndarray | str | os.PathLike[str] | None = None,
    target_noise: float | None = None,
    noise: Literal["keep", "fill"] = "keep",
    min_region: int = 0,
    features: Features | None = None,
) -> SegmentResult:
    """Segment an image by DBSCAN on its pixels (the samples), with per-stage timings.

    Parameters
    ----------
    image_or_path : ndarray or path
        An RGB(A)/grey array (as :func:`gpuseg.load_image` returns; a CuPy array has its features built on
        its GPU) or a path OpenCV reads.
    eps, min_samples
        DBSCAN's parameters, in feature units (colours scaled to [0, 1]; positions times ``xy_scale``).
        ``eps="auto"`` searches for the eps whose noise fraction is closest to ``target_noise`` (a few
        runs; the report's ``eps_search`` lists them).
    color, alpha, xy_scale
        The features (see :func:`gpuseg.pixel_features`). ``xy_scale`` None or 0 clusters colour alone.
    device, engine
        Where and how to cluster (see :func:`gpuseg.dbscan`).
    max_pixels : int
        Refuse larger images (see :func:`gpuseg.load_image`).
    max_memory : int, optional
        Refuse, before loading anything, a run predicted to need more bytes than this (default: the memory
        the machine has available; see :func:`check_run_memory`).
    truth : ndarray or path, optional
        A ground-truth label image of the same size: the report's ``quality`` then holds the adjusted Rand
        index and the variation of information (noise counts as one more region).
    target_noise : float, optional
        The noise fraction ``eps="auto"`` aims at (default 0.1); only with ``eps="auto"``.
    noise : {"keep", "fill"}
        "fill" gives every noise pixel the cluster of the nearest clustered pixel (in the image plane).
    min_region : int
        Regions (4-connected pixels of one cluster) smaller than this join the neighbouring region they
        share the longest border with (see :func:`gpuseg.postprocess.merge_small_regions`); 0 keeps them.
    features : Features, optional
        The features of this very image from an earlier result (``result.features``), built with the same
        ``color`` and ``alpha``: the features stage is skipped (``xy_scale`` may differ; it is set anew).
        For re-clustering one image with other parameters, as the interactive page does.

    The DBSCAN labels are exact; ``noise`` and ``min_region`` work on top of them: the report's
    ``n_clusters``, ``noise_fraction`` and ``cluster_sizes`` stay DBSCAN's, its ``postprocess`` holds the
    same figures for the labels returned. Its ``warnings`` says when one cluster holds more than 90% of the
    samples (colour only on a photo, typically), with the fix.

    Returns
    -------
    SegmentResult

    Raises
    ------
    GpusegError
        The image cannot be read, the run would not fit in memory (MemoryLimitError), or the device or engine
        cannot run.
    ValueError
        A bad parameter.
    """
    from gpuseg.eps_search import check_target_noise
    from gpuseg.postprocess import postprocess

    auto_eps = isinstance(eps, str) and eps == "auto"
    if target_noise is not None and not auto_eps:
        raise ValueError(f"target_noise={target_noise!r} chooses eps: use it with eps='auto', or drop it")
    if auto_eps:
        target_noise = check_target_noise(DEFAULT_TARGET_NOISE if target_noise is None else target_noise)
        check_parameters(1.0, min_samples)
    else:
        check_parameters(eps, min_samples)
    check_postprocess(noise, min_region)
    check_run_memory(image_or_path, color=color, xy_scale=xy_scale, max_memory=max_memory)
    timer = StageTimer()
    start = time.perf_counter()
    source = None
    with timer.stage("load"):
        if isinstance(image_or_path, (str, os.PathLike)):
            source = str(image_or_path)
            image = load_image(image_or_path, max_pixels=max_pixels)
        else:  # a NumPy array, or a CuPy array whose features are then built on its GPU
            image = image_or_path if array_module(image_or_path) is not np else np.asarray(image_or_path)
    with timer.stage("features"):
        if features is None:
            features = build_features(image, color=color, alpha=alpha, xy_scale=xy_scale)
        else:
            features = _reused(features, image, xy_scale)
        if not features.is_image:
            raise ValueError(f"segment() needs an image; got an array of shape {image.shape} (use dbscan())")
    search = None
    if auto_eps:
        search = _search_eps(features, target_noise, min_samples, device, engine, timer)
        eps, run = search.eps, search.run
    else:
        run = cluster_features(features, eps=eps, min_samples=min_samples, device=device, engine=engine, timer=timer)
    labels = np.full(features.shape[0] * features.shape[1], -1, dtype=np.int64)
    samples = None if features.mask is None else to_host(features.mask)
    if samples is None:
        labels[:] = run.labels
    else:
        labels[samples.ravel()] = run.labels
    labels = labels.reshape(features.shape)
    dbscan_labels, post = None, None
    if noise != "keep" or min_region > 1:
        with timer.stage("postprocess"):
            done = postprocess(labels, noise=noise, min_region=min_region, samples=samples)
        dbscan_labels, labels = labels, done.labels
        final = done.labels if samples is None else done.labels[samples]
        post = {"noise": noise, "min_region": int(min_region), "filled": done.filled, "merged_regions": done.merged}
        post.update(cluster_summary(final))
    timings = {name: timer.seconds.get(name, 0.0) for name in STAGES}
    timings["total"] = time.perf_counter() - start
    summary = cluster_summary(run.labels)
    report = {
        "gpuseg_version": __version__,
        "source": source,
        "image_shape": list(image.shape),
        "n_samples": features.n_samples,
        "features": list(features.names),
        "eps": float(eps),
        "min_samples": int(min_samples),
        "color": color,
        "alpha": alpha,
        "xy_scale": features.xy_scale,
        "device": run.device.kind,
        "device_name": run.device.name,
        "engine": run.engine,
        "fallback_reason": run.device.fallback_reason,
        "engine_note": run.note,
        **summary,
        "timings_s": timings,
        "cluster_stages_s": run.sub_seconds,
        "quality": None if truth is None else _quality(labels, truth, max_pixels),
        "eps_search": None if search is None else search.as_report(),
        "postprocess": post,
        "warnings": report_warnings(summary, features.xy_scale, post, search),
    }
    assert tuple(report) == REPORT_KEYS
    return SegmentResult(labels=labels, image=image, features=features, report=report, dbscan_labels=dbscan_labels)


def _reused(features: Features, image, xy_scale: float | None) -> Features:
    """Features of ``image`` from an earlier run, with ``xy_scale`` set anew (colours do not depend on it)."""
    from dataclasses import replace

    from gpuseg.features import check_xy_scale

    if features.shape != tuple(image.shape[:2]) or features.image_rows:
        raise ValueError(
            f"features of shape {features.shape} are not this image's {tuple(image.shape[:2])}: pass the "
            "features of an earlier result for the same image, or none"
        )
    scale = check_xy_scale(xy_scale)
    names = features.names[:-2] if features.xy_scale is not None else features.names
    return replace(features, xy_scale=scale, names=names + (("x", "y") if scale is not None else ()))


def check_postprocess(noise: str, min_region: int) -> None:
    """Raise ValueError naming the parameter and the fix for a bad ``noise`` or ``min_region``."""
    if noise not in NOISE_MODES:
        raise ValueError(f"noise={noise!r} is not one of {', '.join(map(repr, NOISE_MODES))}")
    if isinstance(min_region, bool) or not isinstance(min_region, (int, np.integer)) or min_region < 0:
        raise ValueError(f"min_region={min_region!r} must be an integer >= 0 (pixels; 0 merges nothing)")


def report_warnings(
    summary: dict[str, Any], xy_scale: float | None, post: dict[str, Any] | None = None, search=None
) -> list[str]:
    """The report's ``warnings``: what to say about labels that are exact but not a useful segmentation
    (``summary`` holds ``cluster_sizes`` and ``noise_fraction``; ``post`` and ``search`` are the report's
    ``postprocess`` and the :class:`~gpuseg.eps_search.EpsSearch`, when there were)."""
    warnings = []
    if search is not None and abs(search.noise_fraction - search.target_noise) > TARGET_MISSED:
        warnings.append(
            f"eps='auto' ended at {search.noise_fraction:.1%} noise, not target_noise={search.target_noise:g}: no "
            f"eps of the {len(search.tried)} tried came closer (the noise falls in steps on this image, or the "
            "target lies beyond the eps searched); choose eps yourself, or another target"
        )
    sizes = summary["cluster_sizes"]
    total = sum(sizes) / (1 - summary["noise_fraction"]) if summary["noise_fraction"] < 1 else 0
    if sizes and total and max(sizes) / total > GIANT_CLUSTER:
        fix = "lower eps, raise min_samples"
        fix += ", or add position (xy_scale 0.01)" if xy_scale is None else ", or raise xy_scale"
        warnings.append(
            f"one cluster holds {max(sizes) / total:.1%} of the samples: no segmentation; {fix}"
            + (" (colour only chains a photo's smooth gradients into one cluster)" if xy_scale is None else "")
        )
    if post is not None and post["noise"] == "fill" and not sizes:
        warnings.append("noise='fill' found no cluster to fill from: every sample is noise; raise eps")
    return warnings


def _search_eps(features: Features, target_noise: float, min_samples: int, device: str, engine: str, timer):
    """eps="auto": the search's runs are timed as the "eps_search" stage, the chosen run's stages as usual."""
    from gpuseg.eps_search import search_eps, start_eps

    with timer.stage("eps_search"):
        start, cap = start_eps(features, target_noise, min_samples)
        search = search_eps(
            features, target_noise=target_noise, min_samples=min_samples, start=start, max_eps=cap,
            device=device, engine=engine,
        )  # fmt: skip
    for name, seconds in search.timer.seconds.items():
        timer.seconds[name] = timer.seconds.get(name, 0.0) + seconds
    timer.seconds["eps_search"] -= sum(search.timer.seconds.values())
    return search


def check_run_memory(
    image_or_path,
    *,
    color: str = DEFAULT_COLOR,
    xy_scale: float | None = DEFAULT_XY_SCALE,
    pictures: int = 0,
    explain: bool = False,
    max_memory: int | None = None,
) -> int:
    """Predict the peak memory of segmenting an image (from its header, for a path) and writing ``pictures``
    pictures (and the explain panel); return it, or raise before any work when it exceeds ``max_memory``
    (default: the memory available).

    Raises
    ------
    MemoryLimitError
        The run would need more memory than it may take.
    """
    from gpuseg.features import check_xy_scale
    from gpuseg.io import read_header
    from gpuseg.memory import check_memory, predicted_memory

    if isinstance(image_or_path, (str, os.PathLike)):
        header = read_header(image_or_path)
        pixels, channels, itemsize, name = header.pixels, header.channels, header.itemsize, str(image_or_path)
        decode = True
    else:
        image = image_or_path if hasattr(image_or_path, "dtype") else np.asarray(image_or_path)
        shape = image.shape + (1,) * max(0, 2 - image.ndim)
        pixels, channels = shape[0] * shape[1], shape[2] if len(shape) == 3 else 1
        itemsize, name, decode = image.dtype.itemsize, "the image", False
    position = check_xy_scale(xy_scale) is not None
    need = predicted_memory(
        pixels, channels=channels, itemsize=itemsize, color=color, position=position, decode=decode,
        pictures=pictures, explain=explain,
    )  # fmt: skip
    what = f"{name}: segmenting {pixels:,} pixels ({color}{' + position' if position else ', colour only'})"
    if pictures:
        what += f" and writing {pictures} picture{'s' if pictures > 1 else ''}"
    check_memory(need, what, max_memory, hint=" (or color='rgb', which needs less)" if color == "lab" else "")
    return need


def _quality(labels: np.ndarray, truth, max_pixels: int) -> dict[str, float]:
    from gpuseg.quality import quality

    if isinstance(truth, (str, os.PathLike)):
        truth = load_image(truth, max_pixels=max_pixels)
    truth = np.asarray(truth)
    if truth.ndim == 3:  # a colour-coded truth image: one region per colour
        truth = np.unique(truth.reshape(-1, truth.shape[2]), axis=0, return_inverse=True)[1].reshape(truth.shape[:2])
    if truth.shape != labels.shape:
        raise ValueError(f"truth of shape {truth.shape} does not match the image's {labels.shape}")
    return quality(labels, truth)


PICTURE_FORMATS: tuple[str, ...] = ("jpg", "png", "webp")
"""Formats of the pictures, the default first (the label maps stay lossless: .npy and 16-bit PNG). Measured
encode times of a photo's overlay, per megapixel: JPEG 2.5 ms, PNG 17-30 ms, WebP 55 ms (2-core machine)."""


def output_paths(
    stem_path: Path, pictures=("overlay",), explain: bool = False, picture_format: str = PICTURE_FORMATS[0]
) -> dict[str, Path]:
    """The output files of an image, named ``<stem><suffix>`` in the stem's folder, the report last; keyed
    by their suffixes with the pictures' named ``.<picture>`` (``.overlay``, ``.explain``)."""
    ext = f".{picture_format}"
    names = {".labels.npy": ".labels.npy", ".labels.png": ".labels.png"}
    names.update({f".{name}": f".{name}{ext}" for name in pictures})
    if explain:
        names[".explain"] = f".explain{ext}"
    names[".json"] = ".json"
    return {key: stem_path.with_name(stem_path.name + suffix) for key, suffix in names.items()}


def save_outputs(
    result: SegmentResult,
    stem_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    pictures: tuple[str, ...] = ("overlay",),
    explain: np.ndarray | None = None,
    picture_format: str = PICTURE_FORMATS[0],
) -> list[Path]:
    """Write the labels (.labels.npy int32; .labels.png uint16, 0 = noise), the ``pictures`` (any of
    overlay, mean, boundaries, noise) and the ``explain`` panel when given, as ``picture_format`` (jpg at
    quality 90, png or webp), and the report (.json) last.

    All the files appear together or none does (:class:`gpuseg.io.OutputSet`): they are encoded in parallel
    into hidden temporary files, the report is written once they all are, and only then are they renamed into
    place; a failure or an interrupt at any point leaves no file behind. With ``overwrite=False`` nothing is
    written if any output exists. The report gains ``outputs`` (the files) and its ``save`` and ``total``
    timings include the writing.

    Raises
    ------
    OutputExistsError
        An output exists and ``overwrite`` is False.
    ValueError
        An unknown picture, or more clusters than a 16-bit label PNG holds.
    """
    from gpuseg.io import picture_writer
    from gpuseg.pictures import PICTURES, picture

    unknown = [p for p in pictures if p not in PICTURES]
    if unknown:
        raise ValueError(f"pictures {unknown} are not among {', '.join(PICTURES)}")
    if picture_format not in PICTURE_FORMATS:
        raise ValueError(f"picture_format={picture_format!r} is not one of {', '.join(PICTURE_FORMATS)}")
    paths = output_paths(Path(stem_path), pictures, explain is not None, picture_format)
    start = time.perf_counter()
    check_png_labels(result.labels)
    image = to_host(result.image)
    renders = {
        paths[".labels.npy"]: lambda: npy_writer(result.labels.astype(np.int32)),
        paths[".labels.png"]: lambda: png_writer(labels_to_png(result.labels)),
        **{
            paths[f".{n}"]: (lambda n=n: picture_writer(picture(n, image, result.labels), picture_format))
            for n in pictures
        },
    }
    if explain is not None:
        renders[paths[".explain"]] = lambda: picture_writer(explain, picture_format)
    with OutputSet(paths.values(), overwrite=overwrite) as outputs:
        stage_all(outputs, renders, threads=len(renders))
        elapsed = time.perf_counter() - start
        timings = dict(result.report.get("timings_s", {}), save=elapsed)
        timings["total"] = timings.get("total", 0.0) + elapsed
        report = {**result.report, "timings_s": timings, "outputs": [str(p) for p in paths.values()]}
        outputs.stage(paths[".json"], json_writer(report))
        written = outputs.commit()
    result.report = report
    return written


def explain_panel(result: SegmentResult, *, device: str = "auto") -> np.ndarray:
    """One picture that shows what the clustering did: the input, the colour-only result, the colour +
    position result (the parameters of ``result``, with xy_scale 0.01 where it had none) and its noise.
    The half that ``result`` lacks is segmented on ``device`` with the automatic engine."""
    from gpuseg.pictures import noise_map, panel

    r = result.report
    image = to_host(result.image)
    options = dict(eps=r["eps"], min_samples=r["min_samples"], color=r["color"], alpha=r["alpha"])
    options.update(device=device, engine="auto")  # an engine chosen for result's features may not run these
    if r["xy_scale"] is None:
        color_only, with_xy = result, segment(image, xy_scale=DEFAULT_XY_SCALE, **options)
    else:
        color_only, with_xy = segment(image, xy_scale=None, **options), result
    xy = with_xy.report["xy_scale"]

    def summary(res: SegmentResult) -> str:
        return f"{res.report['n_clusters']} clusters, noise {res.report['noise_fraction']:.0%}"

    params = f"{r['color']}, eps {r['eps']:g}, min_samples {r['min_samples']}"
    tiles = [
        (to_rgb8(image), f"input: {image.shape[1]}x{image.shape[0]} pixels = samples"),
        (overlay(image, color_only.labels), f"colour only ({params})\n{summary(color_only)}"),
        (
            overlay(image, with_xy.labels),
            f"colour + position, xy_scale {xy:g} (radius {int(r['eps'] / xy)} px)\n{summary(with_xy)}",
        ),
        (noise_map(image, with_xy.labels), "noise of colour + position (magenta)\nnot within eps of a core pixel"),
    ]
    return panel(tiles)
