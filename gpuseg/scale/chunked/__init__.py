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

from gpuseg.scale.chunked.driver import cluster_chunked
from gpuseg.scale.chunked.labels import read_labels
from gpuseg.scale.chunked.position import SeamTable, label_chunk, number_nodes, seam_pairs, seams
from gpuseg.scale.chunked.run import segment_chunked
from gpuseg.scale.chunked.spec import ChunkSpec, chunk_spec

__all__ = [
    "ChunkSpec",
    "SeamTable",
    "chunk_spec",
    "cluster_chunked",
    "label_chunk",
    "number_nodes",
    "read_labels",
    "seam_pairs",
    "seams",
    "segment_chunked",
]
