"""Many images on a Dask cluster: each image is a task that reads its input and writes its outputs on a
worker (a shared file system), with the same all-or-nothing writers as one process; the caller keeps the
manifest and the progress. Dask is imported only here, and only when used.

Scheduler strings (the command line's ``--scheduler``): ``local`` or ``local:N`` starts a
``distributed.LocalCluster`` of N worker processes (default: one per core), ``local-cuda`` a dask-cuda
``LocalCUDACluster`` (one worker per GPU), ``tcp://HOST:PORT`` joins a running scheduler.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpuseg.errors import GpusegError

SCHEDULER_FORMS = "local, local:N, local-cuda or tcp://HOST:PORT"
CONNECT_TIMEOUT_S = 10.0
_TCP = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/:]+(:\d+)?/?$")


def parse_scheduler(text: str) -> tuple[str, Any]:
    """(``"local"``, workers or None), (``"local-cuda"``, None) or (``"address"``, the address) of a
    scheduler string.

    Raises
    ------
    ValueError
        Not one of the forms (the message lists them).
    """
    text = text.strip()
    if text == "local":
        return "local", None
    if text.startswith("local:"):
        n = text[len("local:") :]
        if n.isdigit() and int(n) >= 1:
            return "local", int(n)
        raise ValueError(f"scheduler={text!r}: the number of workers must be a whole number >= 1, as in local:2")
    if text == "local-cuda":
        return "local-cuda", None
    if _TCP.match(text):
        return "address", text
    raise ValueError(f"scheduler={text!r} is not one of {SCHEDULER_FORMS}")


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
    item, options: dict[str, Any], pictures: tuple[str, ...], picture_format: str, explain: bool,
    overwrite: bool, since: float,
) -> dict[str, Any]:  # fmt: skip
    """One image on a worker: segment it and write its outputs (all or nothing); return its report.

    A worker that died while writing an image leaves at most a partial set made after ``since`` (the run's
    start): its temporary files, or some files renamed before the report. A retry removes those and writes
    the set again; a complete set already made by the run (the report written last) is taken as it is, so
    that no image is done twice.
    """
    import json

    from gpuseg.pipeline import check_run_memory, explain_panel, output_paths, save_outputs, segment

    paths = list(output_paths(item.stem, pictures, explain, picture_format).values())
    report_path = paths[-1]
    if _made_since(report_path, since):
        report = json.loads(report_path.read_text())
        if report.get("source") == str(item.source) and all(p.exists() for p in paths):
            return report
    for path in paths:
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            if _made_since(tmp, since):
                tmp.unlink(missing_ok=True)
        if _made_since(path, since):  # renamed into place by an attempt that died before its report
            path.unlink(missing_ok=True)
    check_run_memory(
        item.source, color=options["color"], xy_scale=options["xy_scale"], pictures=len(pictures), explain=explain,
        max_memory=options.get("max_memory"),
    )  # fmt: skip
    result = segment(item.source, **options)
    panel = explain_panel(result, device=options["device"]) if explain else None
    save_outputs(
        result, item.stem, overwrite=overwrite, pictures=pictures, explain=panel, picture_format=picture_format
    )
    return result.report


def _made_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def segment_many_distributed(
    items: list,
    *,
    client,
    options: dict[str, Any],
    pictures: tuple[str, ...] = ("overlay",),
    picture_format: str = "jpg",
    overwrite: bool = False,
    skip_existing: bool = False,
    explain: bool = False,
    manifest: Path | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_written: Callable[[Any], None] | None = None,
    not_images: int = 0,
):
    """:func:`gpuseg.batch.segment_many` with each image a task on the workers of ``client`` (a
    ``distributed.Client``): the same outputs, manifest lines (written here, one per image, as each finishes)
    and summary. A worker that dies mid-image has its task run again elsewhere (Dask reschedules it); the
    image's outputs are still written once, whole, and listed once.

    Returns
    -------
    gpuseg.batch.Summary
    """
    from gpuseg.batch import Manifest, Summary, _entry, announce, output_set_complete, settle
    from gpuseg.pipeline import output_paths

    distributed = _import_distributed()
    summary = Summary(images=len(items), not_images=not_images)
    log = Manifest(manifest)
    start = time.perf_counter()
    since = time.time() - 1.0
    futures: dict[Any, Any] = {}
    try:
        for item in items:
            if skip_existing and output_set_complete(item.stem, pictures, picture_format, explain):
                summary.skipped += 1
                outputs = output_paths(item.stem, pictures, explain, picture_format).values()
                announce(_entry(item, "skipped", outputs=outputs), item, log, on_written, on_result)
                continue
            future = client.submit(
                segment_image_task, item, options, pictures, picture_format, explain, overwrite or skip_existing,
                since, pure=False, key=f"gpuseg-image-{os.urandom(6).hex()}",
            )  # fmt: skip
            futures[future] = item
        for future in distributed.as_completed(list(futures)):
            settle(futures.pop(future), future.result, summary, log, on_written, on_result)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        log.close()
        summary.wall_s = time.perf_counter() - start
    return summary
