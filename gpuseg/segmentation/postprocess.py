"""Segmentations people can use, on top of the exact DBSCAN labels: fill the noise, merge small regions.

Both work on a label map (H, W) in the image plane and leave the DBSCAN labels they start from unchanged;
:func:`gpuseg.segment` runs them after clustering (``noise="fill"``, ``min_region=N``) and records in the
report's ``postprocess`` what they changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from gpuseg.engines.unionfind import find, union
from gpuseg.params import check


@dataclass(frozen=True)
class Postprocessed:
    """Labels after post-processing, and what changed: ``filled`` noise pixels given a cluster, ``merged``
    regions joined to a neighbour."""

    labels: np.ndarray
    filled: int
    merged: int


def postprocess(
    labels: np.ndarray, *, noise: str = "keep", min_region: int = 0, samples: np.ndarray | None = None
) -> Postprocessed:
    """Fill the noise (``noise="fill"``) and then merge regions smaller than ``min_region`` pixels.

    Parameters
    ----------
    labels : ndarray of shape (H, W)
        Cluster labels, -1 for noise and for pixels that are not samples.
    noise : {"keep", "fill"}
        "fill" gives every noise sample the cluster of the nearest clustered pixel (see :func:`fill_noise`).
    min_region : int
        Regions (connected pixels of one cluster) smaller than this join a neighbouring region (see
        :func:`merge_small_regions`); 0 or 1 merges nothing.
    samples : ndarray of bool, shape (H, W), optional
        Which pixels are samples (default: all); the others stay -1 and are nobody's neighbour.

    Returns
    -------
    Postprocessed
    """
    check("noise", noise)
    min_region = check("min_region", min_region)
    filled = merged = 0
    if noise == "fill":
        labels, filled = fill_noise(labels, samples)
    if min_region > 1:
        labels, merged = merge_small_regions(labels, min_region)
    return Postprocessed(labels, filled, merged)


def fill_noise(labels: np.ndarray, samples: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Give every noise sample the label of the nearest clustered pixel in the image plane.

    The nearest pixel is found by the exact Euclidean distance transform (``scipy.ndimage``); among pixels
    at the same distance it picks one deterministically. Clustered pixels keep their labels; pixels that are
    not samples stay -1. With no clustered pixel at all, nothing changes.

    Returns
    -------
    labels : ndarray
        A new label map.
    filled : int
        How many noise samples were given a cluster.

    Examples
    --------
    >>> fill_noise(np.array([[0, -1, -1, 1]]))[0]
    array([[0, 0, 1, 1]])
    """
    from scipy.ndimage import distance_transform_edt

    labels = np.asarray(labels)
    unclustered = labels < 0
    noise = unclustered if samples is None else unclustered & samples
    if not noise.any() or unclustered.all():
        return labels.copy(), 0
    rows, cols = distance_transform_edt(unclustered, return_distances=False, return_indices=True)
    out = labels.copy()
    out[noise] = labels[rows[noise], cols[noise]]
    return out, int(noise.sum())


def merge_small_regions(labels: np.ndarray, min_region: int) -> tuple[np.ndarray, int]:
    """Join every region smaller than ``min_region`` pixels to the neighbouring region it shares the longest
    border with, and renumber the clusters that remain 0, 1, ... in their previous order.

    A region is a 4-connected set of pixels of one cluster (noise, -1, is no region and is left as it is).
    The borders between regions are visited once, longest first (ties in order of the regions' first
    pixels), and a border joins its two regions when either side is still smaller than ``min_region`` --
    the rule of scikit-image's ``felzenszwalb(min_size=)``, with the border length as the weight. So a
    small region joins the neighbour it shares its longest border with, and a region still small after the
    pass touches no other region (only noise). A joined region takes the cluster of the larger side.

    Returns
    -------
    merged_labels : ndarray
        The label map after the merge (a new array), its clusters renumbered 0, 1, ...
    merged : int
        How many regions were joined to a neighbour.

    Examples
    --------
    >>> merge_small_regions(np.array([[0, 0, 0, 1, 2, 2]]), 2)[0]
    array([[0, 0, 0, 0, 1, 1]])
    """
    labels = np.asarray(labels)
    if min_region <= 1 or labels.size == 0:
        return labels.copy(), 0
    region, starts = _label_regions(labels)
    sizes = np.bincount(region[region >= 0], minlength=starts.shape[0]).astype(np.int64)
    a, b = _region_borders(region)
    if a.shape[0] == 0:
        return labels.copy(), 0
    keys, lengths = np.unique(a * np.int64(starts.shape[0]) + b, return_counts=True)
    order = np.argsort(-lengths, kind="stable")  # longest first; keys are ascending within a length
    keys = keys[order]
    owner, merged = _join_small(keys // starts.shape[0], keys % starts.shape[0], sizes, min_region)
    region_label = labels.ravel()[starts][owner]
    present = np.zeros(int(labels.max()) + 1, dtype=bool)
    present[region_label] = True
    rank = np.cumsum(present) - 1
    flat = np.where(region.ravel() >= 0, rank[region_label[np.maximum(region.ravel(), 0)]], labels.ravel())
    return flat.reshape(labels.shape), merged


@njit(cache=True, nogil=True)
def _label_regions(labels):
    """4-connected regions of equal non-negative labels: (H, W) region ids numbered in order of their first
    pixel (-1 elsewhere), and each region's first pixel (raster index)."""
    h, w = labels.shape
    flat = labels.ravel()
    parent = np.arange(h * w)
    for y in range(h):
        for x in range(w):
            i = y * w + x
            if flat[i] < 0:
                continue
            if x > 0 and flat[i - 1] == flat[i]:
                union(parent, i - 1, i)
            if y > 0 and flat[i - w] == flat[i]:
                union(parent, i - w, i)
    region = np.full(h * w, -1, dtype=np.int64)
    n = 0
    for i in range(h * w):
        if flat[i] >= 0:
            r = find(parent, i)
            if r == i:
                region[i] = n
                n += 1
            else:
                region[i] = region[r]  # a root is its region's smallest index, so numbered already
    starts = np.empty(n, dtype=np.int64)
    for i in range(h * w):
        if flat[i] >= 0 and parent[i] == i:
            starts[region[i]] = i
    return region.reshape(h, w), starts


@njit(cache=True, nogil=True)
def _region_borders(region):
    """One (smaller id, larger id) pair per pair of 4-adjacent pixels in different regions."""
    h, w = region.shape
    n = 0
    for y in range(h):
        for x in range(w):
            r = region[y, x]
            if r >= 0:
                if x + 1 < w and region[y, x + 1] >= 0 and region[y, x + 1] != r:
                    n += 1
                if y + 1 < h and region[y + 1, x] >= 0 and region[y + 1, x] != r:
                    n += 1
    a = np.empty(n, dtype=np.int64)
    b = np.empty(n, dtype=np.int64)
    k = 0
    for y in range(h):
        for x in range(w):
            r = region[y, x]
            if r < 0:
                continue
            for s in (region[y, x + 1] if x + 1 < w else -1, region[y + 1, x] if y + 1 < h else -1):
                if s >= 0 and s != r:
                    a[k] = min(r, s)
                    b[k] = max(r, s)
                    k += 1
    return a, b


@njit(cache=True, nogil=True)
def _join_small(a, b, sizes, min_region):
    """Visit the borders (a[i], b[i]) in order and join their regions while either is smaller than
    ``min_region``; the larger side (the earlier region on a tie) stays the owner. Returns each region's
    owner and how many regions were joined."""
    n = sizes.shape[0]
    parent = np.arange(n)
    size = sizes.copy()
    merged = 0
    for i in range(a.shape[0]):
        ra = find(parent, a[i])
        rb = find(parent, b[i])
        if ra == rb or (size[ra] >= min_region and size[rb] >= min_region):
            continue
        if size[rb] > size[ra] or (size[rb] == size[ra] and rb < ra):
            ra, rb = rb, ra
        parent[rb] = ra
        size[ra] += size[rb]
        merged += 1
    owner = np.empty(n, dtype=np.int64)
    for r in range(n):
        owner[r] = find(parent, r)
    return owner, merged
