"""Colour + position, chunk by chunk: count and union each chunk's window, find the component pairs across
each seam, number the components of the whole image, label each chunk (steps 1-4 of the package's docstring)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from gpuseg._core.device import Device
from gpuseg.engines.base import Job
from gpuseg.engines.grid import Window
from gpuseg.engines.grid.cpu import CpuStages, attach_borders
from gpuseg.engines.grid.stencil import stencil
from gpuseg.engines.unionfind import number_components
from gpuseg.features import build_features
from gpuseg.io.lazy import LazyImage
from gpuseg.scale.chunked.labels import ChunkOutcome, finish_chunk, save_atomically
from gpuseg.scale.chunked.spec import NO_INDEX, STOP, ChunkSpec


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

    wy0, wy1, wx0, wx1 = window_box
    began = time.perf_counter()
    image = source.read(wy0, wy1, wx0, wx1)
    seconds["load"] = seconds.get("load", 0.0) + time.perf_counter() - began
    began = time.perf_counter()
    features = build_features(image, color=spec.color, alpha=spec.alpha, xy_scale=spec.xy_scale)
    del image
    s = features.position_scale  # (chunked runs with position only come here)
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
    job = Job(features, spec.eps, spec.min_samples, None, Device("cpu", "cpu"), stop=STOP)
    job.sub_seconds = seconds
    dy, dx = stencil(spec.eps, s, spec.height, spec.width)  # the whole image's stencil (its slack too)
    return window, features, job, CpuStages(job, dy, dx)


def _run_window(source: LazyImage, spec: ChunkSpec, box) -> _WindowRun:

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
    pixel within r of its edge, the smallest owned core index of each local component (``NO_INDEX`` for one
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
    first_core = np.full(n, NO_INDEX, dtype=np.int64)
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
    save_atomically(path, np.savez, index=table.index, component=table.component, first_core=table.first_core)
    save_atomically(grown_path, np.savez_compressed, grown=table.grown)
    table.seconds["save"] = table.seconds.get("save", 0.0) + time.perf_counter() - began
    none = np.zeros(0, dtype=np.int64)
    return SeamTable(none, none, table.first_core, table.seconds)


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
    comp_first = np.full(n_comp, NO_INDEX, dtype=np.int64)
    comp_first[seen] = first[order][at]
    if (comp_first == NO_INDEX).any():  # cannot happen: every core pixel belongs to a chunk
        raise AssertionError("a merged component without a core pixel of its own chunk")
    rank = np.empty(n_comp, dtype=np.int64)
    rank[np.argsort(comp_first, kind="stable")] = np.arange(n_comp)
    numbers = rank[comp]
    return [numbers[offsets[c] : offsets[c + 1]] for c in range(len(first_cores))]


def label_chunk(
    source: LazyImage, spec: ChunkSpec, box, numbers: np.ndarray, grown_path: str, store: str, step: int
) -> ChunkOutcome:
    """Step 4 for one chunk: its labels, written into the Zarr array at ``store`` (see the module's docstring).
    The local components of C + r are those step 1 saved at ``grown_path``; only C + r is read again, for the
    colours of the border pass."""

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
    return finish_chunk(source, box, own, samples, store, step, seconds)
