"""segment(): load -> features -> cluster -> labels -> post-processing -> report, for one image."""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpuseg._core.arrays import array_module, to_host
from gpuseg._core.timing import StageTimer
from gpuseg.engines.run import ClusterRun, cluster_features
from gpuseg.features import Features, build_features
from gpuseg.io.read import load_image, pixel_limit
from gpuseg.options import SegmentOptions
from gpuseg.params import PARAMS, check
from gpuseg.segmentation.budget import check_run_memory
from gpuseg.segmentation.postprocess import postprocess
from gpuseg.segmentation.report import Report, cluster_summary, make_report
from gpuseg.tuning.eps_search import EpsSearch, search_eps, start_eps


@dataclass
class SegmentResult:
    """The outcome of :func:`segment`: ``labels`` (H, W) int64 (-1 noise or not a sample), the ``image``,
    the ``features`` used (``features.matrix()`` gives the rows) and the ``report`` (JSON-serialisable).
    When ``noise="fill"`` or ``min_region`` changed the labels, ``dbscan_labels`` holds DBSCAN's own (else
    None: ``labels`` are DBSCAN's)."""

    labels: np.ndarray
    image: np.ndarray
    features: Features
    report: Report = field(default_factory=dict)  # type: ignore[assignment]
    dbscan_labels: np.ndarray | None = None


def segment(
    image_or_path: np.ndarray | str | os.PathLike[str],
    options: SegmentOptions | None = None,
    *,
    truth: np.ndarray | str | os.PathLike[str] | None = None,
    features: Features | None = None,
    **parameters: Any,
) -> SegmentResult:
    """Segment an image by DBSCAN on its pixels (the samples), with per-stage timings.

    Parameters
    ----------
    image_or_path : ndarray or path
        An RGB(A)/grey array (as :func:`gpuseg.load_image` returns; a CuPy array has its features built on
        its GPU) or a path OpenCV reads.
    options : SegmentOptions, optional
        The options (default: the defaults), with any ``parameters`` given as keywords applied on top.
    truth : ndarray or path, optional
        A ground-truth label image of the same size: the report's ``quality`` then holds the adjusted Rand
        index and the variation of information (noise counts as one more region).
    features : Features, optional
        The features of this very image from an earlier result (``result.features``), built with the same
        ``color`` and ``alpha``: the features stage is skipped (``xy_scale`` may differ; it is set anew).
        For re-clustering one image with other parameters, as the interactive page does.
    **parameters
        Any field of :class:`~gpuseg.options.SegmentOptions`: ``eps`` (a distance in feature units, or
        "auto": the eps whose noise fraction is closest to ``target_noise``), ``min_samples``, ``color``,
        ``alpha``, ``xy_scale`` (None or 0: colour only), ``device``, ``engine``, ``target_noise``,
        ``noise`` ("fill": every noise pixel takes the nearest cluster), ``min_region`` (smaller regions
        join a neighbour), ``max_pixels`` and ``max_memory`` (refused up front).

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
        A bad parameter (named, with the values it takes).
    TypeError
        A keyword that is not an option.

    Examples
    --------
    >>> import gpuseg
    >>> from gpuseg.data import shapes_image
    >>> image = shapes_image(60, 80, seed=1)[0]
    >>> result = gpuseg.segment(image, eps=0.06, min_samples=10, device="cpu")
    >>> result.labels.shape
    (60, 80)
    >>> result.report["engine"]
    'grid'
    """
    options = SegmentOptions.of(options, **parameters)
    check_run_memory(image_or_path, options)
    timer = StageTimer()
    start = time.perf_counter()
    source = None
    with timer.stage("load"):
        if isinstance(image_or_path, (str, os.PathLike)):
            source = str(image_or_path)
            image = load_image(image_or_path, max_pixels=options.max_pixels)
        else:  # a NumPy array, or a CuPy array whose features are then built on its GPU
            image = image_or_path if array_module(image_or_path) is not np else np.asarray(image_or_path)
            _check_array_pixels(image, options.max_pixels)
    with timer.stage("features"):
        if features is None:
            features = build_features(image, color=options.color, alpha=options.alpha, xy_scale=options.xy_scale)
        else:
            features = _reused(features, image, options.xy_scale)
        if not features.is_image:
            raise ValueError(f"segment() needs an image; got an array of shape {image.shape} (use dbscan())")
    search = None
    if options.auto_eps:
        search = _search_eps(features, options, timer)
        eps, run = search.eps, search.run
    else:
        eps = float(options.eps)
        run = cluster_features(
            features, eps=eps, min_samples=options.min_samples, device=options.device, engine=options.engine,
            timer=timer,
        )  # fmt: skip
    labels = _label_map(run.labels, features)
    samples = None if features.mask is None else to_host(features.mask)
    dbscan_labels, post = None, None
    if options.noise != "keep" or options.min_region > 1:
        with timer.stage("postprocess"):
            done = postprocess(labels, noise=options.noise, min_region=options.min_region, samples=samples)
        dbscan_labels, labels = labels, done.labels
        final = done.labels if samples is None else done.labels[samples]
        post = {"noise": options.noise, "min_region": options.min_region, "filled": done.filled,
                "merged_regions": done.merged, **cluster_summary(final)}  # fmt: skip
    quality = None if truth is None else _quality(labels, truth, options.max_pixels)
    timings = dict(timer.seconds, total=time.perf_counter() - start)
    report = _report(source, image, features, options, eps, run, timings, quality, search, post)
    return SegmentResult(labels=labels, image=image, features=features, report=report, dbscan_labels=dbscan_labels)


def _report(source, image, features: Features, options: SegmentOptions, eps: float, run: ClusterRun, timings,
            quality, search: EpsSearch | None, post) -> Report:  # fmt: skip
    summary = cluster_summary(run.labels)
    return make_report(
        source=source, image_shape=image.shape, n_samples=features.n_samples, features=features.names, eps=eps,
        min_samples=options.min_samples, color=options.color, alpha=options.alpha, xy_scale=features.xy_scale,
        device=run.device, engine=run.engine, engine_note=run.note, cluster_sizes=summary["cluster_sizes"],
        noise_fraction=summary["noise_fraction"], timings_s=timings, cluster_stages_s=run.sub_seconds,
        quality=quality, eps_search=None if search is None else search.as_report(), postprocess=post,
    )  # fmt: skip


# ``help(gpuseg.segment)`` and IDEs show the options as keywords, with their defaults (from the table)
_SIGNATURE = inspect.signature(segment)
segment.__signature__ = _SIGNATURE.replace(  # type: ignore[attr-defined]
    parameters=[
        *list(_SIGNATURE.parameters.values())[:4],
        *(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=PARAMS[name].default)
            for name in SegmentOptions.names()
        ),
    ]
)


def _label_map(labels: np.ndarray, features: Features) -> np.ndarray:
    """(H, W) labels from the labels of the samples; -1 where a pixel is not a sample."""
    h, w = features.shape
    if features.mask is None:
        return labels.reshape(h, w)
    full = np.full(h * w, -1, dtype=np.int64)
    full[to_host(features.mask).ravel()] = labels
    return full.reshape(h, w)


def _check_array_pixels(image, max_pixels: int | None) -> None:
    """An array larger than an explicit ``max_pixels`` is refused as a file of that size would be."""
    from gpuseg.errors import ImageError

    if max_pixels is None or image.ndim < 2:
        return
    h, w = image.shape[:2]
    if h * w > max_pixels:
        raise ImageError(
            f"the image: {w}x{h} = {h * w:,} pixels is more than the limit of {max_pixels:,}; "
            f"raise max_pixels={h * w} if the machine has the memory"
        )


def _reused(features: Features, image, xy_scale: float | None) -> Features:
    """Features of ``image`` from an earlier run, with ``xy_scale`` set anew (colours do not depend on it)."""
    if not features.is_image or features.shape != tuple(image.shape[:2]) or features.image_rows:
        raise ValueError(
            f"features of shape {features.shape if features.is_image else 'rows'} are not this image's "
            f"{tuple(image.shape[:2])}: pass the "
            "features of an earlier result for the same image, or none"
        )
    scale = check("xy_scale", xy_scale)
    names = features.names[:-2] if features.xy_scale is not None else features.names
    return dataclasses.replace(features, xy_scale=scale, names=names + (("x", "y") if scale is not None else ()))


def _search_eps(features: Features, options: SegmentOptions, timer: StageTimer) -> EpsSearch:
    """eps="auto": the search's runs are timed as the "eps_search" stage, the chosen run's stages as usual."""
    with timer.stage("eps_search"):
        start, cap = start_eps(features, options.noise_target, options.min_samples)
        search = search_eps(
            features, target_noise=options.noise_target, min_samples=options.min_samples, start=start, max_eps=cap,
            device=options.device, engine=options.engine,
        )  # fmt: skip
    for name, seconds in search.timer.seconds.items():
        timer.seconds[name] = timer.seconds.get(name, 0.0) + seconds
    timer.seconds["eps_search"] -= sum(search.timer.seconds.values())
    return search


def _quality(labels: np.ndarray, truth, max_pixels: int | None) -> dict[str, float]:
    from gpuseg.segmentation.quality import quality

    if isinstance(truth, (str, os.PathLike)):
        truth = load_image(truth, max_pixels=pixel_limit(max_pixels))
    truth = np.asarray(truth)
    if truth.ndim == 3:  # a colour-coded truth image: one region per colour
        truth = np.unique(truth.reshape(-1, truth.shape[2]), axis=0, return_inverse=True)[1].reshape(truth.shape[:2])
    if truth.shape != labels.shape:
        raise ValueError(f"truth of shape {truth.shape} does not match the image's {labels.shape}")
    return quality(labels, truth)
