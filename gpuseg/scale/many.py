"""segment_many(): many images with one set of options, in this process, on a Dask cluster, or in chunks.

Which images are segmented in chunks, what a run refuses before any work, and where its manifest goes are
decided here, so that the command line only translates.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gpuseg.errors import GpusegError, OutputExistsError
from gpuseg.options import OutputOptions, SegmentOptions
from gpuseg.params import check
from gpuseg.scale.chunked.run import ChunkedImages, needs_chunks, refuse_whole_image_options
from gpuseg.scale.folder import FolderPipeline
from gpuseg.scale.inputs import Inputs, Item, check_stems
from gpuseg.scale.manifest import MANIFEST
from gpuseg.scale.runner import Executor, Summary, run_items


def segment_many(
    items: Inputs | Sequence[Item],
    options: SegmentOptions | None = None,
    outputs: OutputOptions | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    client: Any = None,
    jobs: int | None = None,
    chunk: int | None = None,
    skip_existing: bool = False,
    manifest: str | os.PathLike[str] | None = None,
    truth: Any = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_written: Callable[[Item], None] | None = None,
    **parameters: Any,
) -> Summary:
    """Segment many images and write each one's outputs (all together or not at all).

    Images are clustered one at a time on the device while others are decoded and written in threads; with a
    Dask ``client``, each image is a task on its workers. With ``chunk``, every image is segmented in chunks
    of that many pixels a side (:func:`gpuseg.scale.chunked.run.segment_chunked`); without, so are Zarr
    stores and TIFFs too large to decode whole.

    Parameters
    ----------
    items : Inputs or sequence of Item
        The images and the stems of their outputs (:func:`gpuseg.scale.inputs.expand_inputs`).
    options : SegmentOptions, optional
        As for :func:`gpuseg.segment`, with ``parameters`` applied on top.
    outputs : OutputOptions, optional
        The pictures, their format, the explain panel, and whether existing outputs are replaced.
    out_dir : path, optional
        The folder the outputs go to: checked up front, and where the manifest goes for a run of several
        images (or of a folder).
    client : distributed.Client, optional
        Run on this Dask cluster.
    jobs : int, optional
        Threads decoding and threads writing in this process (default: the cores, at most 8).
    chunk : int, optional
        Segment every image in chunks of this many pixels a side.
    skip_existing : bool
        Skip an image whose outputs all exist; redo an incomplete set.
    manifest : path, optional
        The manifest (default: ``<out_dir>/manifest.jsonl`` for a run of several images, else none).
    truth : ndarray or path, optional
        A ground truth for a run of one image (see :func:`gpuseg.segment`).
    on_result, on_written
        Called with each image's entry as it finishes (in the calling thread), and with each image whose
        outputs are written (in the thread that wrote them).

    Returns
    -------
    Summary

    Raises
    ------
    ValueError
        A bad option, ``out_dir`` a file, an image given twice, two images that would write the same files,
        ``truth`` with several images, or an option that a chunked image cannot take.
    OutputExistsError
        Some images have outputs and neither ``outputs.overwrite`` nor ``skip_existing`` says what to do.
    GpusegError
        ``out_dir`` is not writable, or the manifest cannot be opened.

    Examples
    --------
    >>> from pathlib import Path
    >>> from gpuseg.data import shapes_image
    >>> from gpuseg.io.write import save_png
    >>> from gpuseg.scale.inputs import expand_inputs
    >>> Path("photos").mkdir()
    >>> for k in range(2):
    ...     _ = save_png(f"photos/scene{k}.png", shapes_image(30, 40, seed=k)[0])
    >>> summary = segment_many(expand_inputs(["photos"], "out"), out_dir="out", device="cpu")
    >>> summary.done, summary.failed
    (2, 0)
    >>> sorted(p.name for p in Path("out").iterdir())  # each image's outputs, and the manifest of the run
    ['manifest.jsonl', 'scene0.json', 'scene0.labels.npy', 'scene0.labels.png', 'scene0.overlay.jpg',
     'scene1.json', ...]
    """
    options = SegmentOptions.of(options, **parameters)
    outputs = outputs or OutputOptions()
    found = items if isinstance(items, Inputs) else Inputs(list(items))
    check_stems(found.items)
    if truth is not None and len(found.items) > 1:
        raise ValueError(f"truth={str(truth)!r} compares one image with its ground truth; give one image")
    chunk = check("chunk", chunk)
    chunked = [item for item in found.items if chunk is not None or needs_chunks(item.source, options)]
    whole = [item for item in found.items if item not in chunked]
    if chunked:
        refuse_whole_image_options(chunked[0].source, options, explain=outputs.explain, truth=truth)
    replace = outputs.overwrite or skip_existing
    executor: Executor = (
        FolderPipeline(options, outputs, jobs=jobs, replace=replace, truth=truth)
        if client is None
        else _dask(client, options, outputs, replace)
    )
    groups: list[tuple[Sequence[Item], Executor]] = [
        (whole, executor),
        (chunked, ChunkedImages(options, outputs, chunk=chunk, client=client, replace=replace)),
    ]
    if not replace:
        refuse_existing(groups)
    if out_dir is not None:
        check_out_dir(Path(out_dir))
        if manifest is None and (found.expanded or len(found.items) > 1):
            manifest = Path(out_dir) / MANIFEST
    return run_items(
        groups, manifest=None if manifest is None else Path(manifest), skip_existing=skip_existing,
        on_result=on_result, on_written=on_written, not_images=found.not_images,
    )  # fmt: skip


def _dask(client, options: SegmentOptions, outputs: OutputOptions, replace: bool) -> Executor:
    from gpuseg.scale.dask_cluster import DaskImages

    return DaskImages(client, options, outputs, replace=replace)


def refuse_existing(groups: Sequence[tuple[Sequence[Item], Executor]]) -> None:
    """OutputExistsError before any work when images already have outputs."""
    items = [(item, executor) for group, executor in groups for item in group]
    done = [(item, executor) for item, executor in items if any(p.exists() for p in executor.paths(item))]
    if done:
        item, executor = done[0]
        example = next(p for p in executor.paths(item) if p.exists())
        raise OutputExistsError(
            f"{len(done)} of {len(items)} image(s) already have outputs (e.g. {example}); pass --skip-existing "
            "to do the others, or --overwrite to replace them"
        )


def check_out_dir(out_dir: Path) -> None:
    """``out_dir`` must be a folder, or creatable in a writable one (created only when something is written).

    Raises
    ------
    ValueError
        It is a file (or under one).
    GpusegError
        Its nearest existing folder is not writable.
    """
    if out_dir.is_symlink() and not out_dir.exists():
        raise ValueError(
            f"out_dir={str(out_dir)!r} is a symbolic link to nothing (or to itself): remove the link, or give a folder"
        )
    folder = out_dir.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"out_dir={str(out_dir)!r}: {folder} is a file: give a folder (it is created if missing)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GpusegError(f"out_dir={str(out_dir)!r}: {folder} is not writable; give a writable folder")
