"""One image larger than memory: clustered in chunks with a halo, merged exactly.

The labels are identical to the in-memory run's (scikit-learn's DBSCAN on the same features). Each step is a
small pure function of one chunk (or two), so that Dask can schedule them on workers and a plain loop can
run them in one process; nothing of the image's size ever reaches the caller.

Colour + position (the grid engine's stencil of radius r = floor(eps / xy_scale)):

1. ``seams``: per chunk C, read the window C grown by 2r. Core flags counted there are exact for every pixel
   of C grown by r (their whole stencil lies in the window). Union the cores of C + r (the grid engine's
   union stage): every core-core pair with one end in C is found in C's own window. Emit the local
   component of each core pixel within r of C's edge (inside or outside), keyed by its global raster index,
   and each local component's smallest owned core index. Example: a 64-pixel chunk with r = 5 emits the
   cores of a 10-pixel frame around its edge. Save the local component of every pixel of C + r (-1 where
   not a core) for step 4, so that no chunk is counted or unioned twice.
2. ``seam_pairs``: for two neighbouring chunks, the pixels both emitted are the same pixel, so their two
   local components are one: a list of component pairs (small: one per component crossing the seam).
3. ``number_nodes`` (on the caller): one graph of every chunk's components and the pairs,
   ``scipy.sparse.csgraph.connected_components``, then clusters numbered in order of their smallest core
   index, as scikit-learn numbers them.
4. ``label_chunk``: per chunk, the local components step 1 saved and the colours of C + r (read again);
   cores take their cluster's number, every other sample of C the smallest number among the cores within eps
   (the grid engine's border stage over C + r); the chunk is written into the labels' Zarr array.

The tasks run in waves (steps 1, 2 and 4), each gathered before the next; what they share goes through
files beside the labels (the seam tables and local components, the colour table, an image given as an
array), never through a worker's memory, so a worker that dies costs only its own tasks, which Dask runs
again.

Colour only: per chunk, its distinct colours with their counts and first global index (``colour_table``);
one merged table (counts summed, first index the smallest), clustered once as weighted samples in order of
first index (so clusters keep scikit-learn's numbering); then each chunk maps its pixels through the table
(``label_colour_chunk``).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg.lazy_read import LazyImage

DEFAULT_CHUNK = 2048
"""Pixels a side of a chunk when none is asked for."""
OVERVIEW_SIDE = 2048
"""The overview picture of a chunked run is at most this many pixels a side."""
_NO_INDEX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ChunkSpec:
    """What every chunk task needs besides its box: the clustering options and the geometry (pickles small)."""

    eps: float
    min_samples: int
    color: str
    alpha: str
    xy_scale: float | None
    height: int
    width: int
    chunk: int
    radius: int

    @property
    def halo(self) -> int:
        """Pixels read around a chunk: 2r with position (cores exact within r of the chunk), 0 colour only."""
        return 2 * self.radius if self.xy_scale is not None else 0

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """The chunks as (y0, y1, x0, x1), row-major."""
        c = self.chunk
        return [
            (y, min(y + c, self.height), x, min(x + c, self.width))
            for y in range(0, self.height, c)
            for x in range(0, self.width, c)
        ]

    @property
    def grid(self) -> tuple[int, int]:
        return -(-self.height // self.chunk), -(-self.width // self.chunk)

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """Chunk pairs (a, b) whose seam a merge must look at: each chunk with its right and three lower
        neighbours (a chunk is at least r wide, so C + r only reaches those)."""
        rows, cols = self.grid
        pairs = []
        for i in range(rows):
            for j in range(cols):
                a = i * cols + j
                if j + 1 < cols:
                    pairs.append((a, a + 1))
                if i + 1 < rows:
                    pairs.extend((a, (i + 1) * cols + jj) for jj in (j - 1, j, j + 1) if 0 <= jj < cols)
        return pairs


def chunk_spec(
    shape: tuple[int, int], *, eps: float, min_samples: int, color: str, alpha: str, xy_scale, chunk: int | None
) -> ChunkSpec:
    """The :class:`ChunkSpec` of an image of ``shape`` (H, W).

    Raises
    ------
    ValueError
        A bad parameter, or a chunk smaller than its halo needs (twice the stencil radius).
    """
    from gpuseg.cluster import check_parameters
    from gpuseg.engines.grid.stencil import stencil_radius
    from gpuseg.features import check_xy_scale

    eps, min_samples = check_parameters(eps, min_samples)
    xy_scale = check_xy_scale(xy_scale)
    h, w = shape
    chunk = DEFAULT_CHUNK if chunk is None else chunk
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk={chunk!r} must be a whole number of pixels a side, such as {DEFAULT_CHUNK}")
    radius = stencil_radius(eps, xy_scale, max(h, w)) if xy_scale is not None else 0
    chunk = int(min(chunk, max(h, w)))
    if xy_scale is not None and chunk < max(2 * radius, 1) and chunk < max(h, w):
        raise ValueError(
            f"chunk={chunk} is smaller than the halo needs: eps={eps:g} with xy_scale={xy_scale:g} lets pixels "
            f"{radius} apart be neighbours, so a chunk must be at least {2 * radius} pixels a side"
        )
    return ChunkSpec(eps, min_samples, color, alpha, xy_scale, h, w, chunk, radius)


# ------------------------------------------------------------------------------------ colour + position


@dataclass
class _WindowRun:
    """The grid engine's count and union stages over one chunk's window."""

    core: np.ndarray
    """Core flags of the window, kept only within C + r (where they are exact)."""
    local: np.ndarray
    """Local component of every pixel of the window, flat (-1 where not a core of C + r)."""
    origin: tuple[int, int]
    inner: tuple[slice, slice]
    """The chunk's own pixels within the window."""
    grown: tuple[slice, slice]
    """The pixels of C + r within the window."""
    seconds: dict[str, float]


def _grown(spec: ChunkSpec, box, by: int) -> tuple[int, int, int, int]:
    """A chunk's box grown by ``by`` pixels on each side, within the image."""
    y0, y1, x0, x1 = box
    return max(0, y0 - by), min(spec.height, y1 + by), max(0, x0 - by), min(spec.width, x1 + by)


def _read_window(source: LazyImage, spec: ChunkSpec, window_box, seconds: dict[str, float]):
    """(the grid engine's :class:`Window` of the pixels of ``window_box``, their features, the grid engine's
    CPU stages) with the whole image's positions and stencil."""
    from gpuseg.device import Device
    from gpuseg.engines.base import Job
    from gpuseg.engines.grid import Window
    from gpuseg.engines.grid.cpu import CpuStages
    from gpuseg.engines.grid.stencil import stencil
    from gpuseg.features import build_features

    wy0, wy1, wx0, wx1 = window_box
    began = time.perf_counter()
    image = source.read(wy0, wy1, wx0, wx1)
    seconds["load"] = seconds.get("load", 0.0) + time.perf_counter() - began
    began = time.perf_counter()
    features = build_features(image, color=spec.color, alpha=spec.alpha, xy_scale=spec.xy_scale)
    del image
    s = features.xy_scale
    window = Window(
        colors=features.colors,
        lut=features.lut if features.lut is not None else np.zeros(1),
        mask=features.mask,
        weights=None,
        xs=np.arange(wx0, wx1, dtype=np.int64) * s,  # the positions of the whole image's features, exactly
        ys=np.arange(wy0, wy1, dtype=np.int64) * s,
        tile_rows=wy1 - wy0,
    )
    seconds["features"] = seconds.get("features", 0.0) + time.perf_counter() - began
    job = Job(features, spec.eps, spec.min_samples, None, Device("cpu", "cpu"), stop=_STOP)
    job.sub_seconds = seconds
    dy, dx = stencil(spec.eps, s, spec.height, spec.width)  # the whole image's stencil (its slack too)
    return window, features, job, CpuStages(job, dy, dx)


def _run_window(source: LazyImage, spec: ChunkSpec, box) -> _WindowRun:
    from gpuseg.engines.unionfind import number_components

    y0, y1, x0, x1 = box
    seconds: dict[str, float] = {}
    wy0, wy1, wx0, wx1 = _grown(spec, box, spec.halo)
    window, _, job, stages = _read_window(source, spec, (wy0, wy1, wx0, wx1), seconds)
    with job.sub_stage("count"):
        counted = stages.count(window)
    gy0, gy1, gx0, gx1 = _grown(spec, box, spec.radius)
    grown = (slice(gy0 - wy0, gy1 - wy0), slice(gx0 - wx0, gx1 - wx0))
    core = np.zeros_like(counted)
    core[grown] = counted[grown]
    del counted
    with job.sub_stage("union"):
        parent = stages.union(window, core)
    with job.sub_stage("number"):
        local = number_components(parent, core.reshape(-1))
    del parent
    inner = (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
    return _WindowRun(core, local, (wy0, wx0), inner, grown, seconds)


@dataclass
class SeamTable:
    """What a chunk tells the merge: the global raster index (ascending) and local component of each core
    pixel within r of its edge, the smallest owned core index of each local component (``_NO_INDEX`` for one
    with cores in the halo only), and the seconds of its stages; and what it tells its own labelling: the
    local component of every pixel of C + r (-1 where not a core), ``grown``."""

    index: np.ndarray
    component: np.ndarray
    first_core: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    grown: np.ndarray | None = None

    @property
    def n_components(self) -> int:
        return self.first_core.shape[0]


def seams(source: LazyImage, spec: ChunkSpec, box) -> SeamTable:
    """Step 1 for one chunk (see the module's docstring)."""
    run = _run_window(source, spec, box)
    h, w = run.core.shape
    local = run.local.reshape(h, w)
    n = int(local.max()) + 1 if local.size else 0
    (wy0, wx0), (iy, ix), r = run.origin, run.inner, spec.radius
    frame = run.core.copy()
    frame[iy.start + r : iy.stop - r, ix.start + r : ix.stop - r] = False
    rows, cols = np.nonzero(frame)
    index = (rows + wy0).astype(np.int64) * spec.width + (cols + wx0)
    owned = local[iy, ix]
    flat = owned.reshape(-1)
    members = np.flatnonzero(flat >= 0)
    comps, first = np.unique(flat[members], return_index=True)
    at = members[first]
    first_core = np.full(n, _NO_INDEX, dtype=np.int64)
    cw = ix.stop - ix.start
    first_core[comps] = (at // cw + iy.start + wy0).astype(np.int64) * spec.width + (at % cw + ix.start + wx0)
    grown = local[run.grown].astype(_component_dtype(n))
    return SeamTable(index, local[rows, cols].astype(np.int64), first_core, run.seconds, grown)


def _component_dtype(n: int) -> np.dtype:
    """The smallest signed integer type holding local component numbers -1 to n - 1."""
    for dtype in (np.int8, np.int16, np.int32):
        if n <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def seam_pairs(a: SeamTable, b: SeamTable) -> np.ndarray:
    """Step 2: the (component of a, component of b) pairs that are one component, from the pixels both
    chunks emitted; shape (k, 2), distinct.

    Example: a emits pixel 1000 in its component 3 and b the same pixel in its component 0, so (3, 0)."""
    _, ia, ib = np.intersect1d(a.index, b.index, assume_unique=True, return_indices=True)
    if not ia.size:
        return np.zeros((0, 2), dtype=np.int64)
    key = np.unique(a.component[ia] * max(b.n_components, 1) + b.component[ib])
    return np.stack(np.divmod(key, max(b.n_components, 1)), axis=1)


def seams_to_file(source: LazyImage, spec: ChunkSpec, box, path: str, grown_path: str) -> SeamTable:
    """Step 1 as a task: the chunk's table saved at ``path`` and the local components of C + r at
    ``grown_path`` (for step 4, which then neither counts nor unions again), each atomically (a rerun after a
    dead worker replaces them whole); only the table's small part is returned (first core index of each
    component, seconds)."""
    table = seams(source, spec, box)
    began = time.perf_counter()
    _save_atomically(path, np.savez, index=table.index, component=table.component, first_core=table.first_core)
    _save_atomically(grown_path, np.savez_compressed, grown=table.grown)
    table.seconds["save"] = table.seconds.get("save", 0.0) + time.perf_counter() - began
    none = np.zeros(0, dtype=np.int64)
    return SeamTable(none, none, table.first_core, table.seconds)


def _save_atomically(path: str, save, **arrays) -> None:
    tmp = f"{path}.{os.urandom(4).hex()}.tmp"
    with open(tmp, "wb") as f:
        save(f, **arrays)
    os.replace(tmp, path)


def _load_grown(path: str) -> np.ndarray:
    with np.load(path) as f:
        return f["grown"]


def seam_pairs_of_files(path_a: str, path_b: str) -> np.ndarray:
    """Step 2 as a task, on two tables saved by :func:`seams_to_file`."""

    def load(path):
        with np.load(path) as f:
            return SeamTable(f["index"], f["component"], f["first_core"])

    return seam_pairs(load(path_a), load(path_b))


def number_nodes(first_cores: list[np.ndarray], pairs: dict[tuple[int, int], np.ndarray]) -> list[np.ndarray]:
    """Step 3: the cluster number of every local component of every chunk.

    ``first_cores[c]`` holds the smallest owned core index of each component of chunk c, ``pairs[(a, b)]``
    the component pairs of the seam of chunks a and b. Components joined through the pairs are one cluster;
    clusters are numbered in order of their smallest core index.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    sizes = np.array([f.shape[0] for f in first_cores], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    if n == 0:
        return [np.zeros(0, dtype=np.int64) for _ in first_cores]
    rows = [offsets[a] + p[:, 0] for (a, _), p in pairs.items()]
    cols = [offsets[b] + p[:, 1] for (_, b), p in pairs.items()]
    rows_a = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    cols_a = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(rows_a.shape[0], dtype=np.int8), (rows_a, cols_a)), shape=(n, n)).tocsr()
    n_comp, comp = connected_components(graph, directed=False)
    first = np.concatenate(first_cores)
    order = np.argsort(first, kind="stable")
    seen, at = np.unique(comp[order], return_index=True)  # each cluster's node with the smallest index
    comp_first = np.full(n_comp, _NO_INDEX, dtype=np.int64)
    comp_first[seen] = first[order][at]
    if (comp_first == _NO_INDEX).any():  # cannot happen: every core pixel belongs to a chunk
        raise AssertionError("a merged component without a core pixel of its own chunk")
    rank = np.empty(n_comp, dtype=np.int64)
    rank[np.argsort(comp_first, kind="stable")] = np.arange(n_comp)
    numbers = rank[comp]
    return [numbers[offsets[c] : offsets[c + 1]] for c in range(len(first_cores))]


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


def label_chunk(
    source: LazyImage, spec: ChunkSpec, box, numbers: np.ndarray, grown_path: str, store: str, step: int
) -> ChunkOutcome:
    """Step 4 for one chunk: its labels, written into the Zarr array at ``store`` (see the module's docstring).
    The local components of C + r are those step 1 saved at ``grown_path``; only C + r is read again, for the
    colours of the border pass."""
    from gpuseg.engines.grid.cpu import attach_borders

    y0, y1, x0, x1 = box
    seconds: dict[str, float] = {}
    gy0, gy1, gx0, gx1 = _grown(spec, box, spec.radius)
    win, features, _, st = _read_window(source, spec, (gy0, gy1, gx0, gx1), seconds)
    began = time.perf_counter()
    local = _load_grown(grown_path)
    seconds["load"] += time.perf_counter() - began
    if local.shape != win.shape:
        raise AssertionError(f"chunk {box}: components of {local.shape} saved, a window of {win.shape} read")
    began = time.perf_counter()
    local = local.reshape(-1)
    n = int(local.max()) + 1 if local.size else 0
    if n != numbers.shape[0]:
        raise AssertionError(f"chunk {box}: {n} components saved, {numbers.shape[0]} numbered")
    core = (local >= 0).reshape(win.shape)
    labels = np.append(numbers.astype(np.int64), -1)[local]  # component -1 (not a core) takes the last: -1
    del local
    iy, ix = slice(y0 - gy0, y1 - gy0), slice(x0 - gx0, x1 - gx0)
    mask = features.mask
    todo = np.zeros(win.shape, dtype=np.bool_)  # the border rule for the chunk's own samples only
    todo[iy, ix] = True if mask is None else mask[iy, ix]
    attach_borders(
        win.colors, win.lut, todo, core, win.xs, win.ys, win.tile_rows, st.dy, st.dx, st.eps2, labels, st.stop
    )
    seconds["borders"] = time.perf_counter() - began
    own = labels.reshape(win.shape)[iy, ix]
    samples = todo[iy, ix]
    return _finish_chunk(source, box, own, samples, store, step, seconds)


def _finish_chunk(source, box, own, samples, store, step, seconds) -> ChunkOutcome:
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


# ------------------------------------------------------------------------------------------ colour only


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
    from gpuseg.engines.merge import _pack, _packable_codes
    from gpuseg.features import build_features

    y0, y1, x0, x1 = box
    features = build_features(source.read(y0, y1, x0, x1), color=spec.color, alpha=spec.alpha, xy_scale=None)
    codes = _packable_codes(features)
    if codes is not None:
        keys = _pack(codes)[0]
    else:
        rows = np.ascontiguousarray(features.matrix() + 0.0)  # -0.0 and 0.0 share their bytes
        keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    return keys, features.mask, features


def colour_table(source: LazyImage, spec: ChunkSpec, box) -> ColourTable:
    """Colour only, step 1 for one chunk: its distinct colours (see the module's docstring)."""
    from gpuseg.engines.merge import _merge_hashed, _merge_sorted

    y0, _, x0, x1 = box
    began = time.perf_counter()
    keys, mask, _ = _colour_keys(source, spec, box)
    first, inverse = _merge_hashed(keys) if keys.dtype == np.uint64 else _merge_sorted(keys)
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
    from gpuseg.cluster import cluster_features
    from gpuseg.features import points_features

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
    table = _load_colour_labels(table)
    keys, mask, _ = _colour_keys(source, spec, box)
    y0, y1, x0, x1 = box
    own = np.full((y1 - y0) * (x1 - x0), -1, dtype=np.int64)
    values = table.labels[np.searchsorted(table.keys, keys)]
    if mask is None:
        own[:] = values
        samples = np.ones((y1 - y0, x1 - x0), dtype=np.bool_)
    else:
        samples = mask
        own[mask.reshape(-1)] = values
    seconds = {"map": time.perf_counter() - began}
    return _finish_chunk(source, box, own.reshape(y1 - y0, x1 - x0), samples, store, step, seconds)


def _save_colour_labels(table: ColourLabels, path: Path) -> str:
    with open(path, "wb") as f:
        np.save(f, table.keys)
        np.save(f, table.labels)
    return str(path)


@functools.lru_cache(maxsize=2)
def _load_colour_labels(path: str) -> ColourLabels:
    """The merged table, read once per process (a worker labels many chunks with it)."""
    with open(path, "rb") as f:
        return ColourLabels(np.load(f), np.load(f))


# ----------------------------------------------------------------------------------------- the driver


_STOP = np.zeros(1, dtype=np.bool_)
"""The stop flag of the chunk kernels of this process: set when the calling thread is interrupted (Ctrl-C), so
that the chunk being clustered ends at its next row; never set on a Dask worker."""


class LocalRunner:
    """Runs chunk tasks one after the other in this process (the same functions Dask runs on workers), each in
    gpuseg's compute thread so that Ctrl-C stops a run at once (:func:`gpuseg.interrupts.call_interruptibly`)."""

    workers = 0

    def __init__(self):
        _STOP[0] = False

    def submit(self, fn, *args):
        from gpuseg.interrupts import call_interruptibly

        return call_interruptibly(lambda: fn(*args), _STOP)

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
            from gpuseg.features import build_features

            tables = runner.gather([runner.submit(colour_table, source, spec, box) for box in boxes])
            stage_seconds = [t.seconds for t in tables]
            began = time.perf_counter()
            probe = build_features(source.read(0, 1, 0, 1), color=spec.color, alpha=spec.alpha, xy_scale=None)
            table, run = cluster_colour_tables(tables, probe, spec, device, engine)
            del tables
            table_path = _save_colour_labels(table, work / "colours.npy")
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

    from gpuseg.lazy_read import open_lazy

    array = source.array
    zarr.create_array(str(path), shape=array.shape, chunks=(chunk, chunk, *array.shape[2:]), dtype=array.dtype)[...] = (
        array
    )
    return open_lazy(path)


def read_labels(store: str | os.PathLike[str]) -> np.ndarray:
    """The whole label array of a chunked run (for images that fit in memory: tests, small runs)."""
    import zarr

    return np.asarray(zarr.open_array(str(store), mode="r")[...]).astype(np.int64)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------------ outputs

CHUNKED_OUTPUTS = (".labels.zarr", ".overview", ".json")
"""A chunked run writes ``<stem>.labels.zarr`` (int32 labels, -1 noise), ``<stem>.overview.<format>`` (the
overlay picture, downsampled to at most OVERVIEW_SIDE pixels a side) and the report ``<stem>.json``."""


def chunked_output_paths(stem_path: str | os.PathLike[str], picture_format: str = "jpg") -> dict[str, Path]:
    """The outputs of a chunked run, keyed by their suffixes, the report last."""
    stem = Path(stem_path)
    names = {".labels.zarr": ".labels.zarr", ".overview": f".overview.{picture_format}", ".json": ".json"}
    return {key: stem.with_name(stem.name + suffix) for key, suffix in names.items()}


def segment_chunked(
    image_or_path,
    stem_path: str | os.PathLike[str],
    *,
    eps: float,
    min_samples: int,
    color: str = "lab",
    alpha: str = "ignore",
    xy_scale: float | None = 0.01,
    chunk: int | None = None,
    client=None,
    device: str = "cpu",
    engine: str = "auto",
    overwrite: bool = False,
    picture_format: str = "jpg",
    max_pixels: int | None = None,
) -> dict[str, Any]:
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
    eps, min_samples, color, alpha, xy_scale
        As in :func:`gpuseg.segment`.
    chunk : int, optional
        Pixels a side of a chunk (default 2048); at least twice the stencil radius eps / xy_scale.
    client : distributed.Client, optional
        Run the chunks on this Dask cluster.
    device, engine
        Where and how the table of a colour-only run is clustered (the chunks themselves run on CPUs).
    overwrite : bool
        Replace existing outputs (else nothing is written if any exists).

    Returns
    -------
    dict
        The report: :func:`gpuseg.segment`'s keys, plus ``chunking``, ``workers`` and ``outputs``.

    Raises
    ------
    OutputExistsError
        An output exists and ``overwrite`` is False.
    ImageError
        The input cannot be read or is not an image.
    ValueError
        A bad parameter, or a chunk smaller than its halo needs.
    """
    from gpuseg import __version__
    from gpuseg.device import cpu_name
    from gpuseg.errors import OutputExistsError
    from gpuseg.io import OutputSet, json_writer, picture_writer
    from gpuseg.labels import overlay
    from gpuseg.lazy_read import open_lazy
    from gpuseg.pipeline import report_warnings
    from gpuseg.report import REPORT_KEYS, STAGES

    start = time.perf_counter()
    paths = chunked_output_paths(stem_path, picture_format)
    existing = [str(p) for p in paths.values() if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)}: exist; pass --overwrite to replace them")
    source = open_lazy(image_or_path, max_pixels=max_pixels)
    spec = chunk_spec(
        (source.height, source.width), eps=eps, min_samples=min_samples, color=color, alpha=alpha,
        xy_scale=xy_scale, chunk=chunk,
    )  # fmt: skip
    target = paths[".labels.zarr"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        run = cluster_chunked(source, tmp, spec, client=client, device=device, engine=engine)
        sec = run.seconds
        cluster_s = sum(v for k, v in sec.items() if k not in ("load", "features", "save"))
        names = _feature_names(source, spec)
        report = {
            "gpuseg_version": __version__,
            "source": None if isinstance(image_or_path, np.ndarray) else str(image_or_path),
            "image_shape": list(source.shape),
            "n_samples": run.samples,
            "features": names,
            "eps": spec.eps,
            "min_samples": spec.min_samples,
            "color": color,
            "alpha": alpha,
            "xy_scale": spec.xy_scale,
            "device": "cpu",
            "device_name": cpu_name(),
            "engine": run.engine,
            "fallback_reason": None,
            "engine_note": f"chunked: {len(spec.boxes())} chunks of {spec.chunk} px a side, halo {spec.halo} px, "
            "merged exactly",
            "n_clusters": int(run.sizes.shape[0]),
            "noise_fraction": run.noise / run.samples if run.samples else 0.0,
            "cluster_sizes": [int(s) for s in run.sizes],
            "timings_s": {
                **dict.fromkeys(STAGES, 0.0),
                "load": sec.get("load", 0.0),
                "features": sec.get("features", 0.0),
                "cluster": cluster_s,
                "save": sec.get("save", 0.0),
            },
            "cluster_stages_s": {k: v for k, v in sec.items() if k not in ("load", "features", "save")},
            "quality": None,
            "eps_search": None,
            "postprocess": None,
            "warnings": [],
        }
        report["warnings"] = report_warnings(report, spec.xy_scale)
        assert tuple(report) == REPORT_KEYS
        rows, cols = spec.grid
        report["chunking"] = {"chunk": spec.chunk, "halo": spec.halo, "chunks": rows * cols, "grid": [rows, cols]}
        report["workers"] = run.workers
        report["outputs"] = [str(p) for p in paths.values()]
        files = [paths[".overview"], paths[".json"]]
        with OutputSet(files, overwrite=overwrite) as outputs:
            outputs.stage(paths[".overview"], picture_writer(overlay(run.overview_image, run.overview_labels),
                                                             picture_format))  # fmt: skip
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
    from gpuseg.features import build_features

    probe = build_features(source.read(0, 1, 0, 1), color=spec.color, alpha=spec.alpha, xy_scale=spec.xy_scale)
    return list(probe.names)


def _place_tree(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished Zarr folder into place (an old one, with ``overwrite``, is moved aside first and
    removed after)."""
    from gpuseg.errors import OutputExistsError

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


def chunked_set_complete(stem: Path, picture_format: str) -> bool:
    """Do all the outputs of a chunked run exist (its report included)?"""
    return all(p.exists() for p in chunked_output_paths(stem, picture_format).values())


def segment_chunked_many(
    items: list,
    *,
    options: dict[str, Any],
    chunk: int | None = None,
    client=None,
    picture_format: str = "jpg",
    overwrite: bool = False,
    skip_existing: bool = False,
    manifest: Path | None = None,
    on_result=None,
    on_written=None,
    summary=None,
):
    """:func:`segment_chunked` for each of ``items`` (:class:`gpuseg.batch.Item`), one after the other (the
    chunks of each run on ``client``'s workers when given), with a manifest line per image and a
    :class:`gpuseg.batch.Summary` (``summary``, added to, when given)."""
    from gpuseg.batch import Manifest, Summary, _entry, announce, settle

    if summary is None:
        summary = Summary()
    summary.images += len(items)
    log = Manifest(manifest)
    start = time.perf_counter()
    keys = ("eps", "min_samples", "color", "alpha", "xy_scale", "device", "engine", "max_pixels")
    try:
        for item in items:
            if skip_existing and chunked_set_complete(item.stem, picture_format):
                summary.skipped += 1
                outputs = chunked_output_paths(item.stem, picture_format).values()
                announce(_entry(item, "skipped", outputs=outputs), item, log, on_written, on_result)
                continue
            run = functools.partial(
                segment_chunked, item.source, item.stem, chunk=chunk, client=client, picture_format=picture_format,
                overwrite=overwrite or skip_existing, **{k: options[k] for k in keys if k in options},
            )  # fmt: skip
            settle(item, run, summary, log, on_written, on_result)
    finally:
        log.close()
        summary.wall_s += time.perf_counter() - start
    return summary


def zarr_inputs(inputs, out_dir: Path | None) -> tuple[list, list]:
    """Split the command line's inputs into Zarr folders (each one image, as :class:`gpuseg.batch.Item`
    whose stem drops ``.zarr``) and the rest (files, folders and patterns)."""
    from gpuseg.batch import Item
    from gpuseg.lazy_read import ZARR_SUFFIXES, _looks_like_zarr

    items, rest = [], []
    for text in inputs:
        path = Path(text)
        if path.is_dir() and (str(path).lower().rstrip("/").endswith(ZARR_SUFFIXES) or _looks_like_zarr(path)):
            name = path.name
            for suffix in sorted(ZARR_SUFFIXES, key=len, reverse=True):
                if name.lower().endswith(suffix):
                    name = name[: -len(suffix)]
                    break
            items.append(Item(path, (out_dir if out_dir is not None else path.parent) / name))
        else:
            rest.append(text)
    return items, rest


def needs_chunks(path, options: dict[str, Any]) -> bool:
    """Would this image not fit in memory whole, and can it be read a window at a time (TIFF, Zarr)?"""
    from gpuseg.errors import GpusegError, MemoryLimitError
    from gpuseg.io import DEFAULT_MAX_PIXELS, read_header
    from gpuseg.lazy_read import is_lazy_path
    from gpuseg.pipeline import check_run_memory

    if not is_lazy_path(path):
        return False
    try:
        if Path(path).is_dir() or read_header(path).pixels > options.get("max_pixels", DEFAULT_MAX_PIXELS):
            return True
        check_run_memory(
            path, color=options["color"], xy_scale=options["xy_scale"], max_memory=options.get("max_memory")
        )
    except MemoryLimitError:
        return True
    except (GpusegError, OSError, ValueError):  # its run will say what is wrong
        return False
    return False
