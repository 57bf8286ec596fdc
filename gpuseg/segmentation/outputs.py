"""The files of a segmented image: label maps, pictures and the report, written all together or not at all."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gpuseg._core.arrays import to_host
from gpuseg.io.write import OutputSet, json_writer, npy_writer, picture_writer, png_writer, stage_all
from gpuseg.options import OutputOptions
from gpuseg.params import check
from gpuseg.segmentation.labels import check_png_labels, labels_to_png
from gpuseg.segmentation.pictures import picture
from gpuseg.segmentation.pipeline import SegmentResult

# Measured encode times of a photo's overlay, per megapixel: JPEG 2.5 ms, PNG 17-30 ms, WebP 55 ms (2-core
# machine): JPEG is the default picture format; the label maps stay lossless (.npy and 16-bit PNG).


def output_paths(
    stem_path: str | os.PathLike[str],
    pictures: tuple[str, ...] = ("overlay",),
    explain: bool = False,
    picture_format: str = "jpg",
) -> dict[str, Path]:
    """The output files of an image, named ``<stem><suffix>`` in the stem's folder, the report last; keyed
    by their suffixes with the pictures' named ``.<picture>`` (``.overlay``, ``.explain``).

    Examples
    --------
    >>> [p.name for p in output_paths("out/cat").values()]
    ['cat.labels.npy', 'cat.labels.png', 'cat.overlay.jpg', 'cat.json']
    """
    stem_path = Path(stem_path)
    ext = f".{picture_format}"
    names = {".labels.npy": ".labels.npy", ".labels.png": ".labels.png"}
    names.update({f".{name}": f".{name}{ext}" for name in pictures})
    if explain:
        names[".explain"] = f".explain{ext}"
    names[".json"] = ".json"
    return {key: stem_path.with_name(stem_path.name + suffix) for key, suffix in names.items()}


def planned_paths(stem_path: str | os.PathLike[str], outputs: OutputOptions) -> list[Path]:
    """The files :func:`save_outputs` writes for ``outputs``, the report last."""
    return list(output_paths(stem_path, outputs.pictures, outputs.explain, outputs.picture_format).values())


def save_outputs(
    result: SegmentResult,
    stem_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    pictures: tuple[str, ...] = ("overlay",),
    explain: np.ndarray | None = None,
    picture_format: str = "jpg",
) -> list[Path]:
    """Write the labels (.labels.npy int32; .labels.png uint16, 0 = noise), the ``pictures`` (any of
    overlay, mean, boundaries, noise) and the ``explain`` panel when given, as ``picture_format`` (jpg at
    quality 90, png or webp), and the report (.json) last.

    All the files appear together or none does (:class:`gpuseg.io.write.OutputSet`): they are encoded in
    parallel into hidden temporary files, the report is written once they all are, and only then are they
    renamed into place; a failure or an interrupt at any point leaves no file behind. With ``overwrite=False``
    nothing is written if any output exists. The report gains ``outputs`` (the files) and its ``save`` and
    ``total`` timings include the writing.

    Returns
    -------
    list of Path
        The files written, the report last.

    Raises
    ------
    OutputExistsError
        An output exists and ``overwrite`` is False.
    ValueError
        An unknown picture or format, or more clusters than a 16-bit label PNG holds.

    Examples
    --------
    >>> import gpuseg, tempfile, pathlib
    >>> from gpuseg.data import shapes_image
    >>> result = gpuseg.segment(shapes_image(40, 50, seed=1)[0], device="cpu")
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     [p.name for p in save_outputs(result, pathlib.Path(folder) / "shapes")]
    ['shapes.labels.npy', 'shapes.labels.png', 'shapes.overlay.jpg', 'shapes.json']
    """
    pictures = check("pictures", pictures)
    check("picture_format", picture_format)
    paths = output_paths(Path(stem_path), pictures, explain is not None, picture_format)
    start = time.perf_counter()
    check_png_labels(result.labels)
    image = to_host(result.image)
    renders: dict[Path, Callable[[], Callable[[Any], None]]] = {
        paths[".labels.npy"]: lambda: npy_writer(result.labels.astype(np.int32)),
        paths[".labels.png"]: lambda: png_writer(labels_to_png(result.labels)),
        **{
            paths[f".{n}"]: functools.partial(_picture_writer, n, image, result.labels, picture_format)
            for n in pictures
        },
    }
    if explain is not None:
        renders[paths[".explain"]] = lambda: picture_writer(explain, picture_format)
    with OutputSet(paths.values(), overwrite=overwrite) as outputs:
        stage_all(outputs, renders, threads=len(renders))
        elapsed = time.perf_counter() - start
        timings = dict(result.report.get("timings_s", {}), save=elapsed)
        timings["total"] = timings.get("total", 0.0) + elapsed
        report = {**result.report, "timings_s": timings, "outputs": [str(p) for p in paths.values()]}
        outputs.stage(paths[".json"], json_writer(report))
        written = outputs.commit()
    result.report = report  # type: ignore[assignment]
    return written


def write_result(
    result: SegmentResult,
    stem_path: str | os.PathLike[str],
    outputs: OutputOptions,
    panel: np.ndarray | None = None,
    *,
    overwrite: bool | None = None,
) -> list[Path]:
    """:func:`save_outputs` of ``result`` as ``outputs`` says, with its explain ``panel`` (made by the caller:
    it clusters the image again, on the device)."""
    return save_outputs(
        result, stem_path, overwrite=outputs.overwrite if overwrite is None else overwrite,
        pictures=outputs.pictures, explain=panel, picture_format=outputs.picture_format,
    )  # fmt: skip


def _picture_writer(name: str, image: np.ndarray, labels: np.ndarray, picture_format: str) -> Callable[[Any], None]:
    return picture_writer(picture(name, image, labels), picture_format)
