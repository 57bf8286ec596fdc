"""Many images in one process at the speed of the slowest stage: decode in a pool of threads, cluster one image
at a time on the device, encode and write in a pool of threads, with bounded queues between them."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuseg._core.device import resolve_device
from gpuseg._core.memory import available_memory
from gpuseg.io import gpu_decode
from gpuseg.io.read import load_image, read_header
from gpuseg.io.write import abort_all_outputs
from gpuseg.options import OutputOptions, SegmentOptions
from gpuseg.scale.inputs import Item
from gpuseg.scale.runner import Outcome, Record
from gpuseg.segmentation import pipeline
from gpuseg.segmentation.budget import check_run_memory
from gpuseg.segmentation.explain import explain_panel
from gpuseg.segmentation.outputs import planned_paths, write_result


@dataclass
class Decoded:
    item: Item
    image: Any = None
    seconds: float = 0.0
    error: BaseException | None = None


class FolderPipeline:
    """The images of a run in this process, streaming: decoding (a pool of ``jobs`` threads) runs ahead of
    clustering (one image at a time, on the device, every core of a CPU), and encoding and writing (another
    pool) behind it; the queues between them are bounded so that only a few images are in memory at once.
    Each image's outputs appear together or not at all (:func:`gpuseg.segmentation.outputs.save_outputs`);
    ``replace`` lets them replace existing files (``overwrite``, or an incomplete set redone)."""

    def __init__(
        self,
        options: SegmentOptions,
        outputs: OutputOptions,
        *,
        jobs: int | None = None,
        replace: bool = False,
        truth: Any = None,
    ) -> None:
        self.options, self.outputs, self.replace, self.truth = options, outputs, replace, truth
        self.jobs = max(1, jobs or min(8, os.cpu_count() or 1))

    def paths(self, item: Item) -> list[Path]:
        return planned_paths(item.stem, self.outputs)

    def complete(self, item: Item) -> bool:
        return all(p.is_file() for p in self.paths(item))

    def run(self, items: list[Item], record: Record) -> Iterator[Outcome]:
        jobs = self.jobs
        ahead = _images_in_flight(items, jobs)
        on_gpu = _runs_on_gpu(self.options.device)
        decoders = ThreadPoolExecutor(jobs, thread_name_prefix="gpuseg-decode")
        writers = ThreadPoolExecutor(jobs, thread_name_prefix="gpuseg-write")
        try:
            pending_decodes: deque[Future] = deque()
            pending_writes: deque[Future] = deque()
            queue = iter(items)

            def refill() -> None:
                while len(pending_decodes) < ahead:
                    item = next(queue, None)
                    if item is None:
                        return
                    pending_decodes.append(decoders.submit(self._decode, item, on_gpu))

            refill()
            while pending_decodes:
                decoded = pending_decodes.popleft().result()
                refill()
                if decoded.error is not None:
                    yield Outcome(decoded.item, "failed", error=decoded.error)
                    continue
                try:
                    result = self._cluster(decoded)
                    panel = explain_panel(result, device=self.options.device) if self.outputs.explain else None
                except Exception as exc:
                    yield Outcome(decoded.item, "failed", error=exc)
                    continue
                item = decoded.item
                del decoded
                pending_writes.append(writers.submit(self._write, item, result, panel, record))
                del result, panel
                while len(pending_writes) > jobs:
                    yield pending_writes.popleft().result()
            while pending_writes:
                yield pending_writes.popleft().result()
        except BaseException:  # an interrupt: drop what is queued; writers still running remove their files
            abort_all_outputs()
            decoders.shutdown(wait=False, cancel_futures=True)
            writers.shutdown(wait=False, cancel_futures=True)
            raise
        decoders.shutdown()
        writers.shutdown()

    def _decode(self, item: Item, on_gpu: bool) -> Decoded:
        began = time.perf_counter()
        try:
            check_run_memory(item.source, self.options, pictures=len(self.outputs.pictures),
                             explain=self.outputs.explain)  # fmt: skip
            limit = self.options.max_pixels
            if on_gpu and gpu_decode.decodes(item.source):
                image = gpu_decode.load_image_on_gpu(item.source, max_pixels=limit)
            else:
                image = load_image(item.source, max_pixels=limit)
                if on_gpu:
                    image = gpu_decode.upload(image)
            return Decoded(item, image, time.perf_counter() - began)
        except Exception as exc:  # reported when its turn comes, in order
            return Decoded(item, error=exc, seconds=time.perf_counter() - began)

    def _cluster(self, decoded: Decoded) -> pipeline.SegmentResult:
        """:func:`gpuseg.segment` on the decoded image, with the report's source and load time the file's."""
        result = pipeline.segment(decoded.image, self.options, truth=self.truth)
        timings = dict(result.report["timings_s"])
        timings["load"] = decoded.seconds
        timings["total"] = timings.get("total", 0.0) + decoded.seconds
        result.report["source"] = str(decoded.item.source)
        result.report["timings_s"] = timings
        return result

    def _write(self, item: Item, result, panel, record: Record) -> Outcome:
        """Encode and write an image's outputs, then record it at once (in this writer thread), so that an
        interrupt never leaves a finished image out of the manifest."""
        try:
            write_result(result, item.stem, self.outputs, panel, overwrite=self.replace)
        except Exception as exc:
            outcome = Outcome(item, "failed", error=exc)
        else:
            outcome = Outcome.done(item, result.report)
        record(outcome)
        return outcome


def _images_in_flight(items: list[Item], jobs: int) -> int:
    """How many images may be decoded ahead of the one being clustered: ``jobs`` + 1, fewer when the largest
    of the first images, decoded, would not leave room for them in half the memory available."""
    largest = 0
    for item in items[:64]:  # the first images stand for the rest: a header read each
        try:
            header = read_header(item.source)
        except Exception:  # its decoding will fail, and say why
            continue
        largest = max(largest, header.pixels * header.channels * header.itemsize)
    room = 0.5 * available_memory() // max(largest, 1)
    return int(max(1, min(jobs + 1, room)))


def _runs_on_gpu(device: str) -> bool:
    """Will the run's images be clustered on a GPU (then decoded there where nvImageCodec can)?"""
    try:
        return resolve_device(device).kind == "gpu"
    except Exception:  # no GPU for device="gpu": each image's run says so
        return False
