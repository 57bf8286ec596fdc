"""Colour only, chunk by chunk: each chunk's distinct colours, one table clustered once, each chunk's pixels
mapped through it."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpuseg.engines.merge import merge_hashed, merge_sorted, pack_codes, packable_codes
from gpuseg.engines.run import cluster_features
from gpuseg.features import build_features, points_features
from gpuseg.io.lazy import LazyImage
from gpuseg.scale.chunked.labels import ChunkOutcome, finish_chunk
from gpuseg.scale.chunked.spec import ChunkSpec


@dataclass
class ColourTable:
    """A chunk's distinct colours: keys (packed integer codes, or the bytes of float rows), their counts and
    the global raster index of each one's first pixel."""

    keys: np.ndarray
    counts: np.ndarray
    first: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


def _colour_keys(source: LazyImage, spec: ChunkSpec, box):
    """(keys of the samples, sample mask or None, features) of a chunk's pixels."""

    y0, y1, x0, x1 = box
    features = build_features(source.read(y0, y1, x0, x1), color=spec.color, alpha=spec.alpha, xy_scale=None)
    codes = packable_codes(features)
    if codes is not None:
        keys = pack_codes(codes)[0]
    else:
        rows = np.ascontiguousarray(features.matrix() + 0.0)  # -0.0 and 0.0 share their bytes
        keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    return keys, features.mask, features


def colour_table(source: LazyImage, spec: ChunkSpec, box) -> ColourTable:
    """Colour only, step 1 for one chunk: its distinct colours (see the module's docstring)."""

    y0, _, x0, x1 = box
    began = time.perf_counter()
    keys, mask, _ = _colour_keys(source, spec, box)
    first, inverse = merge_hashed(keys) if keys.dtype == np.uint64 else merge_sorted(keys)
    at = first if mask is None else np.flatnonzero(mask.reshape(-1))[first]
    cw = x1 - x0
    index = (at // cw + y0).astype(np.int64) * spec.width + (at % cw + x0)
    counts = np.bincount(inverse, minlength=first.shape[0])
    return ColourTable(keys[first], counts, index, {"merge": time.perf_counter() - began})


@dataclass
class ColourLabels:
    """The merged colour table, sorted by key, with each colour's cluster number."""

    keys: np.ndarray
    labels: np.ndarray


def cluster_colour_tables(tables: list[ColourTable], probe, spec: ChunkSpec, device: str, engine: str):
    """Colour only, step 2 (on the caller): merge the chunks' tables and cluster the distinct colours once,
    weighted by their counts, in order of their first pixel. ``probe`` is the features of one pixel (for the
    colour lookup table). Returns (:class:`ColourLabels`, the cluster run)."""

    keys = np.concatenate([t.keys for t in tables])
    counts = np.concatenate([t.counts for t in tables])
    firsts = np.concatenate([t.first for t in tables])
    uniq, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    weights = np.bincount(inverse, weights=counts, minlength=uniq.shape[0])
    order = np.lexsort((firsts, inverse))
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    first = firsts[order][starts]
    by_first = np.argsort(first, kind="stable")
    points = _key_values(uniq[by_first], probe)
    run = cluster_features(
        points_features(points), eps=spec.eps, min_samples=spec.min_samples, sample_weight=weights[by_first],
        device=device, engine=engine,
    )  # fmt: skip
    labels = np.empty(uniq.shape[0], dtype=np.int64)
    labels[by_first] = run.labels
    return ColourLabels(uniq, labels), run


def _key_values(keys: np.ndarray, probe) -> np.ndarray:
    """The feature rows of colour keys (unpacking integer codes through the lookup table)."""
    k = probe.colors.shape[2]
    if keys.dtype != np.uint64:
        return np.ascontiguousarray(keys).view(np.float64).reshape(-1, k)
    width = probe.colors.dtype.itemsize * 8
    codes = np.stack([(keys >> np.uint64(width * c)) & np.uint64((1 << width) - 1) for c in range(k)], axis=1)
    return probe.lut[codes.astype(np.int64)]


def label_colour_chunk(source: LazyImage, spec: ChunkSpec, box, table: str, store: str, step: int) -> ChunkOutcome:
    """Colour only, step 3 for one chunk: each sample takes its colour's cluster number (from the merged table
    saved at ``table``); written to ``store``."""
    began = time.perf_counter()
    labels = _load_colour_labels(table)
    keys, mask, _ = _colour_keys(source, spec, box)
    y0, y1, x0, x1 = box
    own = np.full((y1 - y0) * (x1 - x0), -1, dtype=np.int64)
    values = labels.labels[np.searchsorted(labels.keys, keys)]
    if mask is None:
        own[:] = values
        samples = np.ones((y1 - y0, x1 - x0), dtype=np.bool_)
    else:
        samples = mask
        own[mask.reshape(-1)] = values
    seconds = {"map": time.perf_counter() - began}
    return finish_chunk(source, box, own.reshape(y1 - y0, x1 - x0), samples, store, step, seconds)


def save_colour_labels(table: ColourLabels, path: Path) -> str:
    with open(path, "wb") as f:
        np.save(f, table.keys)
        np.save(f, table.labels)
    return str(path)


@functools.lru_cache(maxsize=2)
def _load_colour_labels(path: str) -> ColourLabels:
    """The merged table, read once per process (a worker labels many chunks with it)."""
    with open(path, "rb") as f:
        return ColourLabels(np.load(f), np.load(f))
