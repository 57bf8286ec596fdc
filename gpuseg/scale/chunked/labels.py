"""A labelled chunk: its labels written into the run's Zarr array, and what it tells the caller."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ChunkOutcome:
    """What a labelled chunk tells the caller: cluster sizes, sample and noise counts, its part of the
    overview (image and labels at every ``step``-th pixel) and its stage seconds."""

    sizes: np.ndarray
    samples: int
    noise: int
    overview_at: tuple[int, int]
    overview_image: np.ndarray
    overview_labels: np.ndarray
    seconds: dict[str, float]


def finish_chunk(source, box, own, samples, store, step, seconds) -> ChunkOutcome:
    """Write a chunk's labels and summarise them."""
    import zarr

    y0, y1, x0, x1 = box
    began = time.perf_counter()
    zarr.open_array(store, mode="r+")[y0:y1, x0:x1] = own.astype(np.int32)
    seconds["save"] = seconds.get("save", 0.0) + time.perf_counter() - began
    values = own[samples]
    oy, ox = (-y0) % step, (-x0) % step
    return ChunkOutcome(
        sizes=np.bincount(values[values >= 0]),
        samples=int(values.shape[0]),
        noise=int((values < 0).sum()),
        overview_at=((y0 + oy) // step, (x0 + ox) // step),
        overview_image=np.ascontiguousarray(source.read(y0 + oy, y1, x0 + ox, x1)[::step, ::step]),
        overview_labels=np.ascontiguousarray(own[oy::step, ox::step]),
        seconds=seconds,
    )


def save_atomically(path: str, save, **arrays) -> None:
    tmp = f"{path}.{os.urandom(4).hex()}.tmp"
    with open(tmp, "wb") as f:
        save(f, **arrays)
    os.replace(tmp, path)


def read_labels(store: str | os.PathLike[str]) -> np.ndarray:
    """The whole label array of a chunked run (for images that fit in memory: tests, small runs)."""
    import zarr

    return np.asarray(zarr.open_array(str(store), mode="r")[...]).astype(np.int64)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
