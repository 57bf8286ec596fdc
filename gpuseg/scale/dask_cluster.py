"""Many images on a Dask cluster: each image is a task that reads its input and writes its outputs on a
worker (a shared file system), with the same all-or-nothing writers as one process; the caller keeps the
manifest and the progress. Dask is imported only here, and only when used.

Scheduler strings (the command line's ``--scheduler``): ``local`` or ``local:N`` starts a
``distributed.LocalCluster`` of N worker processes (default: one per core), ``local-cuda`` a dask-cuda
``LocalCUDACluster`` (one worker per GPU), ``tcp://HOST:PORT`` joins a running scheduler.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpuseg.errors import GpusegError
from gpuseg.options import OutputOptions, SegmentOptions
from gpuseg.params import parse_scheduler
from gpuseg.scale.inputs import Item
from gpuseg.scale.runner import Outcome, Record
from gpuseg.segmentation.budget import check_run_memory
from gpuseg.segmentation.explain import explain_panel
from gpuseg.segmentation.outputs import planned_paths, write_result
from gpuseg.segmentation.pipeline import segment

CONNECT_TIMEOUT_S = 10.0


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise GpusegError("a Dask scheduler needs Dask: pip install 'gpuseg[dask]'") from None
    return distributed


@contextlib.contextmanager
def dask_client(scheduler: str, *, timeout: float | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for a scheduler string (see the module's docstring); a cluster it starts is
    closed on the way out.

    Raises
    ------
    ValueError
        A scheduler string of no known form.
    GpusegError
        Dask (or dask-cuda) is not installed, or the scheduler cannot be reached within ``timeout`` seconds
        (default CONNECT_TIMEOUT_S).
    """
    kind, arg = parse_scheduler(scheduler)
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    distributed = _import_distributed()
    cluster = None
    if kind == "local":
        workers = arg or os.cpu_count() or 1
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    elif kind == "local-cuda":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise GpusegError("scheduler 'local-cuda' needs dask-cuda: pip install 'gpuseg[gpu]'") from None
        cluster = LocalCUDACluster(dashboard_address=":0")
    try:
        if cluster is not None:
            client = distributed.Client(cluster)
        else:
            try:
                client = distributed.Client(arg, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise GpusegError(
                    f"could not reach the Dask scheduler at {arg} within {timeout:g} s ({exc}); is it running, and "
                    "is the address right?"
                ) from None
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def segment_image_task(
    item: Item, options: SegmentOptions, outputs: OutputOptions, replace: bool, since: float
) -> dict[str, Any]:
    """One image on a worker: segment it and write its outputs (all or nothing); return its report.

    A worker that died while writing an image leaves at most a partial set made after ``since`` (the run's
    start): its temporary files, or some files renamed before the report. A retry removes those and writes
    the set again; a complete set already made by the run (the report written last) is taken as it is, so
    that no image is done twice.
    """
    paths = planned_paths(item.stem, outputs)
    report_path = paths[-1]
    if _made_since(report_path, since):
        saved: dict[str, Any] = json.loads(report_path.read_text())
        if saved.get("source") == str(item.source) and all(p.exists() for p in paths):
            return saved
    for path in paths:
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            if _made_since(tmp, since):
                tmp.unlink(missing_ok=True)
        if _made_since(path, since):  # renamed into place by an attempt that died before its report
            path.unlink(missing_ok=True)
    check_run_memory(item.source, options, pictures=len(outputs.pictures), explain=outputs.explain)
    result = segment(item.source, options)
    panel = explain_panel(result, device=options.device) if outputs.explain else None
    write_result(result, item.stem, outputs, panel, overwrite=replace)
    return dict(result.report)


def _made_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


class DaskImages:
    """The images of a run as tasks on the workers of ``client`` (a ``distributed.Client``): the same outputs
    as in one process, each image's manifest line written here as it finishes. A worker that dies mid-image has
    its task run again elsewhere (Dask reschedules it); the image's outputs are still written once, whole."""

    def __init__(self, client, options: SegmentOptions, outputs: OutputOptions, *, replace: bool = False) -> None:
        self.client, self.options, self.outputs, self.replace = client, options, outputs, replace

    def paths(self, item: Item) -> list[Path]:
        return planned_paths(item.stem, self.outputs)

    def complete(self, item: Item) -> bool:
        return all(p.is_file() for p in self.paths(item))

    def run(self, items: list[Item], record: Record) -> Iterator[Outcome]:
        distributed = _import_distributed()
        since = time.time() - 1.0
        futures: dict[Any, Item] = {}
        try:
            for item in items:
                # absolute paths: workers started in another folder see the same files (a shared file system)
                task_item = Item(item.source.absolute(), item.stem.absolute())
                future = self.client.submit(
                    segment_image_task, task_item, self.options, self.outputs, self.replace, since, pure=False,
                    key=f"gpuseg-image-{os.urandom(6).hex()}",
                )  # fmt: skip
                futures[future] = item
            for future in distributed.as_completed(list(futures)):
                item = futures.pop(future)
                try:
                    yield Outcome.done(item, future.result())
                except Exception as exc:
                    yield Outcome(item, "failed", error=exc)
        except BaseException:
            self.client.cancel(list(futures))
            raise
