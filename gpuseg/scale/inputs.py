"""The images of a run: files, folders and glob patterns expanded into images and the stems of their outputs."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gpuseg.io.lazy import ZARR_SUFFIXES, looks_like_zarr

IMAGE_SUFFIXES = frozenset(
    (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".dib", ".webp", ".pbm", ".pgm", ".ppm")
    + (".pnm", ".pam", ".pfm", ".hdr", ".pic", ".ras", ".sr", ".gif", ".jp2", ".j2k", ".jpf", ".avif")
)
"""File suffixes taken as images when a folder or a pattern is expanded (files named one by one are always
tried)."""


@dataclass(frozen=True)
class Item:
    """One image of a run: its ``source`` file and the ``stem`` of its outputs (``<stem>.labels.npy``, ...)."""

    source: Path
    stem: Path


@dataclass
class Inputs:
    """The images of a run, in a stable sorted order, and how many files were passed over."""

    items: list[Item]
    not_images: int = 0
    """Files passed over: not images by their suffix, hidden, not regular files, or gpuseg's outputs."""
    expanded: bool = False
    """Did a folder or a pattern give images (the run is then a batch, with a manifest)?"""


OUTPUT_NAMES = (".labels", ".overlay", ".mean", ".boundaries", ".noise", ".explain", ".kdist")
"""gpuseg writes ``<stem><name>.<ext>``: files named so are outputs, never inputs of a folder or a pattern."""


def expand_inputs(
    inputs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None, recursive: bool = False
) -> Inputs:
    """Files, folders (their subfolders with ``recursive``) and glob patterns, as images with output stems.

    With ``out_dir``, a file found in a folder or by a pattern keeps its path relative to that folder (the
    pattern's folder part) under ``out_dir``, so that images of the same name in different subfolders never
    collide; a file named directly goes to ``out_dir`` itself. Without ``out_dir``, outputs go beside each
    image. Folders and patterns pass over (and count) files whose suffix is not an image's, hidden files,
    what is not a regular file, gpuseg's own outputs and everything under ``out_dir``. A pattern with ``**``
    descends into subfolders.

    Raises
    ------
    ValueError
        A pattern that matches no file, or no image at all among the inputs. (A file that does not exist is
        an image that fails when read.)

    Examples
    --------
    >>> from pathlib import Path
    >>> Path("photos/trip").mkdir(parents=True)
    >>> for name in ("photos/a.png", "photos/trip/b.jpg", "photos/notes.txt"):
    ...     _ = Path(name).write_bytes(b"")
    >>> found = expand_inputs(["photos"], "out", recursive=True)
    >>> [(str(item.source), str(item.stem)) for item in found.items]
    [('photos/a.png', 'out/a'), ('photos/trip/b.jpg', 'out/trip/b')]
    >>> found.not_images
    1
    """
    inputs = list(inputs)
    out = None if out_dir is None else Path(out_dir)
    items: list[Item] = []
    passed_over = 0
    expanded = False
    skip_root = resolved(out) if out is not None else None
    for given in inputs:
        text = os.fspath(given)
        path = Path(text)
        if is_zarr_store(path):  # one image, however many files it holds
            items.append(Item(path, (out or path.parent) / zarr_stem(path.name)))
            continue
        if path.is_dir():
            found = sorted(_listing(path, recursive))
            root = path
        elif path.exists() or not glob.has_magic(text):  # a file: one that is missing fails as that image
            items.append(Item(path, (out or path.parent) / path.stem))
            continue
        else:
            found = sorted(Path(p) for p in glob.glob(text, recursive=recursive or "**" in text))
            if not found:
                raise ValueError(f"{text}: the pattern matches no file; check it, or quote it for gpuseg to expand")
            root = Path(_literal_prefix(text))
        expanded = True
        for file in found:
            if is_zarr_store(file) and not _under(file, skip_root):
                relative = file.relative_to(root) if out else file
                stem = relative.with_name(zarr_stem(file.name))
                items.append(Item(file, out / stem if out else stem))
                continue
            if file.is_dir() and not file.is_symlink():
                continue
            if not _is_input(file, skip_root):
                passed_over += 1
                continue
            stem = (out / file.relative_to(root)).with_suffix("") if out else file.with_suffix("")
            items.append(Item(file, stem))
    if not items:
        given = ", ".join(os.fspath(p) for p in inputs)
        hint = "" if recursive else "; --recursive for subfolders"
        raise ValueError(f"no images in {given} ({passed_over} other file(s) passed over{hint})")
    return Inputs(items, passed_over, expanded)


def is_zarr_store(path: Path) -> bool:
    """Is ``path`` a Zarr array or group (a folder named ``*.zarr``, or holding Zarr's metadata)?"""
    return path.is_dir() and (path.name.lower().endswith(ZARR_SUFFIXES) or looks_like_zarr(path))


def zarr_stem(name: str) -> str:
    """A Zarr store's name without its suffix: ``scan.ome.zarr`` -> ``scan``."""
    for suffix in sorted(ZARR_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _listing(folder: Path, recursive: bool) -> list[Path]:
    """What a folder holds (its subfolders' too with ``recursive``), Zarr stores as one entry each."""
    found = []
    for entry in folder.iterdir():
        found.append(entry)
        if recursive and entry.is_dir() and not entry.is_symlink() and not is_zarr_store(entry):
            found += _listing(entry, recursive)
    return found


def _under(path: Path, root: Path | None) -> bool:
    try:
        return root is not None and resolved(path).is_relative_to(root)
    except (OSError, RuntimeError):
        return False


def _is_input(file: Path, skip_root: Path | None) -> bool:
    """Is a file found in a folder or by a pattern an image to segment?"""
    if file.suffix.lower() not in IMAGE_SUFFIXES or file.name.startswith("."):
        return False
    if any(file.stem.endswith(name) for name in OUTPUT_NAMES):
        return False
    try:
        if not file.is_file():  # FIFOs, sockets, devices, broken links
            return False
        if skip_root is not None and resolved(file).is_relative_to(skip_root):
            return False
    except OSError:
        return False
    return True


def _literal_prefix(pattern: str) -> str:
    """The folders of a glob pattern before its first wildcard ("photos/*/x*.jpg" -> "photos")."""
    parts = Path(pattern).parts
    literal = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        literal.append(part)
    return str(Path(*literal)) if literal else "."


def resolved(path: Path) -> Path:
    """``path`` with its links followed, as far as they lead: a link that loops (``ln -s a a``) stays as it is
    (absolute), and fails as that file or folder when it is used."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # a symbolic link loop (RuntimeError up to Python 3.12)
        return path.absolute()


def check_stems(items: Iterable[Item]) -> None:
    """ValueError when an image is given twice (also through overlapping folders or patterns), or two inputs
    would write the same files."""
    seen: dict[Path, Path] = {}
    for item in items:
        key = resolved(item.source)
        if key in seen:
            raise ValueError(
                f"{item.source} is given twice (also as {seen[key]}); give each image, folder or pattern once"
            )
        seen[key] = item.source
    first: dict[Path, Path] = {}
    for item in items:
        key = resolved(item.stem)
        if key in first:
            if resolved(first[key]) == resolved(item.source):
                raise ValueError(f"{item.source} is given twice; give each image once")
            raise ValueError(
                f"{item.source} and {first[key]} would both write {item.stem}.*; rename one, or segment them "
                "into separate --out-dir folders"
            )
        first[key] = item.source
