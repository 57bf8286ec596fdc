"""A chunked run of one image and its outputs (labels as Zarr, an overview picture, the report), the images of
a run that are segmented in chunks, and which images those are."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

from gpuseg._core.device import Device, cpu_name
from gpuseg.errors import GpusegError, ImageError, MemoryLimitError, OutputExistsError
from gpuseg.features import build_features
from gpuseg.io.lazy import LazyImage, is_lazy_path, open_lazy
from gpuseg.io.read import read_header
from gpuseg.io.write import OutputSet, json_writer, picture_writer
from gpuseg.options import OutputOptions, SegmentOptions
from gpuseg.params import DEFAULT_MAX_PIXELS, check
from gpuseg.scale.chunked.driver import cluster_chunked
from gpuseg.scale.chunked.labels import remove_tree
from gpuseg.scale.chunked.spec import ChunkSpec, chunk_spec
from gpuseg.scale.inputs import Item
from gpuseg.scale.runner import Outcome, Record
from gpuseg.segmentation.budget import check_run_memory
from gpuseg.segmentation.labels import overlay
from gpuseg.segmentation.report import Report, make_report

CHUNKED_OUTPUTS = (".labels.zarr", ".overview", ".json")
"""A chunked run writes ``<stem>.labels.zarr`` (int32 labels, -1 noise), ``<stem>.overview.<format>`` (the
overlay picture, downsampled to at most OVERVIEW_SIDE pixels a side) and the report ``<stem>.json``."""


def chunked_output_paths(stem_path: str | os.PathLike[str], picture_format: str = "jpg") -> dict[str, Path]:
    """The outputs of a chunked run, keyed by their suffixes, the report last.

    Examples
    --------
    >>> [p.name for p in chunked_output_paths("out/scan").values()]
    ['scan.labels.zarr', 'scan.overview.jpg', 'scan.json']
    """
    stem = Path(stem_path)
    names = {".labels.zarr": ".labels.zarr", ".overview": f".overview.{picture_format}", ".json": ".json"}
    return {key: stem.with_name(stem.name + suffix) for key, suffix in names.items()}


def refuse_whole_image_options(source: object, options: SegmentOptions, *, explain: bool = False,
                               truth: object = None) -> None:  # fmt: skip
    """ValueError when ``options`` (or ``explain``, ``truth``) need the whole image in memory, which a chunked
    run of ``source`` never holds."""
    if explain or truth is not None:
        raise ValueError(
            f"{source} is segmented in chunks, which write labels and an overview only: explain=True and "
            "truth need the whole image in memory"
        )
    whole = options.whole_image_only()
    if whole:
        one = len(whole) == 1
        raise ValueError(
            f"{source} is segmented in chunks, which give DBSCAN's exact labels only: {' and '.join(whole)} "
            f"need{'s' if one else ''} the whole image in memory; leave {'it' if one else 'them'} out, or give a "
            "smaller image"
        )


def segment_chunked(
    image_or_path,
    stem_path: str | os.PathLike[str],
    options: SegmentOptions | None = None,
    *,
    chunk: int | None = None,
    client=None,
    overwrite: bool = False,
    picture_format: str = "jpg",
    **parameters: Any,
) -> Report:
    """Segment an image of any size in chunks and write its outputs; return the report.

    The labels are those :func:`gpuseg.segment` gives (identical), written as a chunked Zarr array
    ``<stem>.labels.zarr`` (int32, -1 for noise and non-samples) beside the report ``<stem>.json`` and a
    downsampled overlay ``<stem>.overview.<picture_format>``. Memory is bounded by a chunk and its halo, not
    by the image: TIFF and Zarr inputs are read a window at a time (other formats are read whole first).
    With a ``distributed.Client``, the chunks are tasks on its workers (which read the input and write the
    Zarr array themselves: a shared file system); else they run one after the other here.

    Parameters
    ----------
    image_or_path : ndarray or path
        An image array, a TIFF, a Zarr array or group (OME-Zarr: its first level), or any image file.
    stem_path : path
        Outputs are named ``<stem>.labels.zarr``, ``<stem>.overview.jpg`` and ``<stem>.json``.
    options : SegmentOptions, optional
        As for :func:`gpuseg.segment`, with ``parameters`` applied on top; ``device`` and ``engine`` choose
        where and how the table of a colour-only run is clustered (the chunks themselves run on CPUs).
        ``eps="auto"``, ``noise="fill"`` and ``min_region`` need the whole image and are refused.
    chunk : int, optional
        Pixels a side of a chunk (default 2048); at least twice the stencil radius eps / xy_scale.
    client : distributed.Client, optional
        Run the chunks on this Dask cluster.
    overwrite : bool
        Replace existing outputs (else nothing is written if any exists).
    picture_format : {"jpg", "png", "webp"}
        The overview's format.

    Returns
    -------
    dict
        The report: :func:`gpuseg.segment`'s keys, plus ``chunking``, ``workers`` and ``outputs``.

    Raises
    ------
    OutputExistsError
        An output exists and ``overwrite`` is False.
    ImageError
        The input cannot be read, is not an image, or has more pixels than ``max_pixels``.
    ValueError
        A bad parameter, an option that needs the whole image, or a chunk smaller than its halo needs.
    """
    options = SegmentOptions.of(options, **parameters)
    check("picture_format", picture_format)
    source_name = "the image" if isinstance(image_or_path, np.ndarray) else str(image_or_path)
    refuse_whole_image_options(source_name, options)
    start = time.perf_counter()
    paths = chunked_output_paths(Path(stem_path).absolute(), picture_format)  # as Dask workers elsewhere see it
    existing = [str(p) for p in paths.values() if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)}: exist; pass --overwrite to replace them")
    if not isinstance(image_or_path, np.ndarray):
        image_or_path = Path(image_or_path).absolute()  # workers started in another folder read the same file
    source = open_lazy(image_or_path, max_pixels=options.max_pixels)
    if options.max_pixels is not None and source.pixels > options.max_pixels:
        raise ImageError(
            f"{source_name}: {source.width}x{source.height} = {source.pixels:,} pixels is more than the limit of "
            f"{options.max_pixels:,}; raise max_pixels={source.pixels} to segment it in chunks"
        )
    spec = chunk_spec(
        (source.height, source.width), eps=cast(float, options.eps),  # eps="auto" was refused above
        min_samples=options.min_samples, color=options.color, alpha=options.alpha, xy_scale=options.xy_scale,
        chunk=chunk,
    )  # fmt: skip
    target = paths[".labels.zarr"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        run = cluster_chunked(source, tmp, spec, client=client, device=options.device, engine=options.engine)
        sec = run.seconds
        stages = {k: v for k, v in sec.items() if k not in ("load", "features", "save")}
        report = make_report(
            source=None if isinstance(image_or_path, np.ndarray) else source_name, image_shape=source.shape,
            n_samples=run.samples, features=tuple(_feature_names(source, spec)), eps=spec.eps,
            min_samples=spec.min_samples,
            color=options.color, alpha=options.alpha, xy_scale=spec.xy_scale, device=Device("cpu", cpu_name()),
            engine=run.engine,
            engine_note=f"chunked: {len(spec.boxes())} chunks of {spec.chunk} px a side, halo {spec.halo} px, "
            "merged exactly",
            cluster_sizes=run.sizes, noise_fraction=run.noise / run.samples if run.samples else 0.0,
            timings_s={"load": sec.get("load", 0.0), "features": sec.get("features", 0.0),
                       "cluster": sum(stages.values()), "save": sec.get("save", 0.0)},
            cluster_stages_s=stages,
        )  # fmt: skip
        rows, cols = spec.grid
        report["chunking"] = {"chunk": spec.chunk, "halo": spec.halo, "chunks": rows * cols, "grid": [rows, cols]}
        report["workers"] = run.workers
        report["outputs"] = [str(p) for p in paths.values()]
        files = [paths[".overview"], paths[".json"]]
        with OutputSet(files, overwrite=overwrite) as outputs:
            picture = overlay(run.overview_image, run.overview_labels)
            outputs.stage(paths[".overview"], picture_writer(picture, picture_format))
            report["timings_s"]["total"] = time.perf_counter() - start
            outputs.stage(paths[".json"], json_writer(report))
            _place_tree(tmp, target, overwrite)
            try:
                outputs.commit()
            except BaseException:
                remove_tree(target)
                raise
    except BaseException:
        remove_tree(tmp)
        raise
    return report


def _feature_names(source: LazyImage, spec: ChunkSpec) -> list[str]:

    probe = build_features(source.read(0, 1, 0, 1), color=spec.color, alpha=spec.alpha, xy_scale=spec.xy_scale)
    return list(probe.names)


def _place_tree(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished Zarr folder into place (an old one, with ``overwrite``, is moved aside first and
    removed after)."""

    old = None
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"{target}: appeared while it was being written; not replaced")
        old = target.with_name(f".{target.name}.{os.urandom(4).hex()}.old")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            remove_tree(old)
        else:
            old.unlink(missing_ok=True)


class ChunkedImages:
    """The images of a run segmented in chunks, one after the other (the chunks of each on ``client``'s
    workers when given)."""

    def __init__(self, options: SegmentOptions, outputs: OutputOptions, *, chunk: int | None = None, client=None,
                 replace: bool = False) -> None:  # fmt: skip
        self.options, self.outputs, self.chunk, self.client, self.replace = options, outputs, chunk, client, replace

    def paths(self, item: Item) -> list[Path]:
        return list(chunked_output_paths(item.stem, self.outputs.picture_format).values())

    def complete(self, item: Item) -> bool:
        return all(p.exists() for p in self.paths(item))

    def run(self, items: list[Item], record: Record) -> Iterator[Outcome]:
        for item in items:
            try:
                report = segment_chunked(
                    item.source, item.stem, self.options, chunk=self.chunk, client=self.client,
                    overwrite=self.replace, picture_format=self.outputs.picture_format,
                )  # fmt: skip
            except Exception as exc:
                yield Outcome(item, "failed", error=exc)
            else:
                yield Outcome.done(item, dict(report))


def needs_chunks(path: str | os.PathLike[str], options: SegmentOptions) -> bool:
    """Should this image be segmented in chunks: a Zarr store, or a TIFF too large to decode whole (more pixels
    than the default limit while no limit was set, or more memory than the run may take)?"""
    if Path(path).is_dir():
        return True
    if not is_lazy_path(path):
        return False
    try:
        if options.max_pixels is None and read_header(path).pixels > DEFAULT_MAX_PIXELS:
            return True
        check_run_memory(path, options)
    except MemoryLimitError:
        return True
    except (GpusegError, OSError, ValueError):  # its run will say what is wrong
        return False
    return False
