"""The geometry of a chunked run: the chunks, their halo, and the options every chunk task needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpuseg.engines.grid.stencil import stencil_radius
from gpuseg.engines.run import check_parameters
from gpuseg.params import DEFAULT_CHUNK, AlphaMode, ColorSpace, check

OVERVIEW_SIDE = 2048
"""The overview picture of a chunked run is at most this many pixels a side."""
NO_INDEX = np.iinfo(np.int64).max
STOP = np.zeros(1, dtype=np.bool_)
"""The stop flag of the chunk kernels of this process: set when the calling thread is interrupted (Ctrl-C), so
that the chunk being clustered ends at its next row; never set on a Dask worker."""


@dataclass(frozen=True)
class ChunkSpec:
    """What every chunk task needs besides its box: the clustering options and the geometry (pickles small)."""

    eps: float
    min_samples: int
    color: ColorSpace
    alpha: AlphaMode
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
    shape: tuple[int, int],
    *,
    eps: float,
    min_samples: int,
    color: ColorSpace,
    alpha: AlphaMode,
    xy_scale: float | None,
    chunk: int | None,
) -> ChunkSpec:
    """The :class:`ChunkSpec` of an image of ``shape`` (H, W).

    Raises
    ------
    ValueError
        A bad parameter, or a chunk smaller than its halo needs (twice the stencil radius).
    """
    eps, min_samples = check_parameters(eps, min_samples)
    xy_scale = check("xy_scale", xy_scale)
    h, w = shape
    chunk = check("chunk", chunk)
    chunk = DEFAULT_CHUNK if chunk is None else chunk
    radius = stencil_radius(eps, xy_scale, max(h, w)) if xy_scale is not None else 0
    chunk = int(min(chunk, max(h, w)))
    if xy_scale is not None and chunk < max(2 * radius, 1) and chunk < max(h, w):
        raise ValueError(
            f"chunk={chunk} is smaller than the halo needs: eps={eps:g} with xy_scale={xy_scale:g} lets pixels "
            f"{radius} apart be neighbours, so a chunk must be at least {2 * radius} pixels a side"
        )
    return ChunkSpec(eps, min_samples, color, alpha, xy_scale, h, w, chunk, radius)
