"""The driver of a chunked run: the steps' tasks in waves, in this process or on a Dask cluster."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpuseg._core.interrupts import call_interruptibly
from gpuseg.features import build_features
from gpuseg.io.lazy import LazyImage, open_lazy
from gpuseg.scale.chunked.colour import cluster_colour_tables, colour_table, label_colour_chunk, save_colour_labels
from gpuseg.scale.chunked.labels import remove_tree
from gpuseg.scale.chunked.position import label_chunk, number_nodes, seam_pairs_of_files, seams_to_file
from gpuseg.scale.chunked.spec import OVERVIEW_SIDE, STOP, ChunkSpec


class LocalRunner:
    """Runs chunk tasks one after the other in this process (the same functions Dask runs on workers), each in
    gpuseg's compute thread so that Ctrl-C stops a run at once (:func:`gpuseg._core.interrupts.call_interruptibly`)."""

    workers = 0

    def __init__(self):
        STOP[0] = False

    def submit(self, fn, *args):

        return call_interruptibly(lambda: fn(*args), STOP)

    def gather(self, handles):
        return list(handles)


class DaskRunner:
    """Runs chunk tasks on a Dask cluster, in waves gathered before the next (their inputs are files, never a
    worker's results); a task whose worker dies is run again elsewhere (every task is a pure function of its
    inputs, and its writes are atomic or idempotent)."""

    def __init__(self, client, retries: int = 3):
        self.client, self.retries = client, retries

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False, retries=self.retries)

    def gather(self, handles):
        return self.client.gather(list(handles))


@dataclass
class ChunkedRun:
    """What :func:`cluster_chunked` did: the summary of the labels, the overview, and where time went."""

    spec: ChunkSpec
    sizes: np.ndarray
    samples: int
    noise: int
    overview_image: np.ndarray
    overview_labels: np.ndarray
    seconds: dict[str, float]
    engine: str
    workers: int


def cluster_chunked(
    source: LazyImage,
    store: str | os.PathLike[str],
    spec: ChunkSpec,
    *,
    client=None,
    device: str = "cpu",
    engine: str = "auto",
) -> ChunkedRun:
    """Cluster ``source`` chunk by chunk into a new Zarr array of int32 labels at ``store`` (-1 noise and
    non-samples; chunks of ``spec.chunk`` pixels a side), on the workers of a ``distributed.Client`` or in
    this process. ``device`` and ``engine`` choose how the one table of a colour-only run is clustered.
    """
    import zarr

    runner = LocalRunner() if client is None else DaskRunner(client)
    store = str(store)
    zarr.create_array(
        store, shape=(spec.height, spec.width), chunks=(spec.chunk, spec.chunk), dtype="int32", fill_value=-1
    )
    step = max(1, math.ceil(max(spec.height, spec.width) / OVERVIEW_SIDE))
    boxes = spec.boxes()
    merge_seconds: dict[str, float] = {}
    # what tasks share goes to files beside the store, not through the scheduler: no task's input is then a
    # result held by a worker that may die, and neither the caller nor a worker holds more than it needs
    work = Path(store).parent / f".{Path(store).name.lstrip('.')}.{os.urandom(4).hex()}.work"
    work.mkdir()
    try:
        if client is not None and source.kind == "array":  # an image in memory: the workers read it as Zarr
            source = _array_to_zarr(source, work / "image.zarr", spec.chunk)
        if spec.xy_scale is not None:
            paths = [str(work / f"seams-{k}.npz") for k in range(len(boxes))]
            grown = [str(work / f"grown-{k}.npz") for k in range(len(boxes))]
            small = runner.gather(
                [
                    runner.submit(seams_to_file, source, spec, box, path, grown_path)
                    for box, path, grown_path in zip(boxes, paths, grown, strict=True)
                ]
            )
            stage_seconds = [t.seconds for t in small]
            pair_keys = spec.neighbour_pairs()
            found = runner.gather([runner.submit(seam_pairs_of_files, paths[a], paths[b]) for a, b in pair_keys])
            began = time.perf_counter()
            numbers = number_nodes([t.first_core for t in small], dict(zip(pair_keys, found, strict=True)))
            merge_seconds["merge"] = time.perf_counter() - began
            outcomes = runner.gather(
                [
                    runner.submit(label_chunk, source, spec, box, nums, grown_path, store, step)
                    for box, nums, grown_path in zip(boxes, numbers, grown, strict=True)
                ]
            )
            engine_name = "grid"
        else:
            tables = runner.gather([runner.submit(colour_table, source, spec, box) for box in boxes])
            stage_seconds = [t.seconds for t in tables]
            began = time.perf_counter()
            probe = build_features(source.read(0, 1, 0, 1), color=spec.color, alpha=spec.alpha, xy_scale=None)
            table, run = cluster_colour_tables(tables, probe, spec, device, engine)
            del tables
            table_path = save_colour_labels(table, work / "colours.npy")
            del table
            merge_seconds["cluster_table"] = time.perf_counter() - began
            outcomes = runner.gather(
                [runner.submit(label_colour_chunk, source, spec, box, table_path, store, step) for box in boxes]
            )
            engine_name = run.engine
    finally:
        remove_tree(work)
    seconds: dict[str, float] = dict(merge_seconds)
    for part in [*stage_seconds, *(o.seconds for o in outcomes)]:
        for name, value in part.items():
            seconds[name] = seconds.get(name, 0.0) + value
    n_clusters = max((o.sizes.shape[0] for o in outcomes), default=0)
    sizes = np.zeros(n_clusters, dtype=np.int64)
    for o in outcomes:
        sizes[: o.sizes.shape[0]] += o.sizes
    oh, ow = -(-spec.height // step), -(-spec.width // step)
    first = outcomes[0].overview_image
    overview_image = np.zeros((oh, ow, *first.shape[2:]), dtype=first.dtype)
    overview_labels = np.full((oh, ow), -1, dtype=np.int64)
    for o in outcomes:
        y, x = o.overview_at
        hh, ww = o.overview_labels.shape
        overview_image[y : y + hh, x : x + ww] = o.overview_image
        overview_labels[y : y + hh, x : x + ww] = o.overview_labels
    return ChunkedRun(
        spec=spec,
        sizes=sizes,
        samples=sum(o.samples for o in outcomes),
        noise=sum(o.noise for o in outcomes),
        overview_image=overview_image,
        overview_labels=overview_labels,
        seconds=seconds,
        engine=engine_name,
        workers=runner.workers,
    )


def _array_to_zarr(source: LazyImage, path: Path, chunk: int) -> LazyImage:
    import zarr

    array = source.array
    if array is None:
        raise TypeError(f"{source} is not an image held in memory")
    zarr.create_array(str(path), shape=array.shape, chunks=(chunk, chunk, *array.shape[2:]), dtype=array.dtype)[...] = (
        array
    )
    return open_lazy(path)
