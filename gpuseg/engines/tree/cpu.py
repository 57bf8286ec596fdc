"""CPU kernels of the tree engine (numba): a k-d tree over the merged rows, radius queries into CSR neighbour
lists, and the DBSCAN stages over those lists.

The tree is balanced: node ``i`` has children ``2i + 1`` and ``2i + 2``, each node splits its points at the
median of its widest coordinate, and every leaf sits on the last level. Points are stored in tree order and
by column (``cols[k, p]``), so that a leaf's distances are computed for all its points at once, one column
after the other (SIMD), each summed over the columns in column order: the exactness rule, bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gpuseg.engines.stopping import stopped
from gpuseg.engines.unionfind import find


@njit(cache=True, nogil=True)
def _select(order, points, dim, lo, hi, k):
    """Reorder ``order[lo:hi]`` so that ``order[k]`` holds the row with the k-th smallest ``points[:, dim]``,
    smaller or equal values before it and larger or equal ones after (quickselect, median-of-three pivot)."""
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        a, b, c = points[order[lo], dim], points[order[mid], dim], points[order[hi - 1], dim]
        pivot = max(min(a, b), min(max(a, b), c))  # the median of the three
        i, j = lo, hi - 1
        while i <= j:
            while points[order[i], dim] < pivot:
                i += 1
            while points[order[j], dim] > pivot:
                j -= 1
            if i <= j:
                t = order[i]
                order[i] = order[j]
                order[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j + 1
        elif k >= i:
            lo = i
        else:  # order[j + 1 : i] all equal the pivot, k among them
            return


@njit(cache=True, nogil=True)
def build_tree(points, leaf_size, index_dtype, stop):
    """A balanced k-d tree whose leaves hold at most ``leaf_size`` rows of ``points`` (M, D).

    Returns ``order`` (tree position -> row, of ``index_dtype``), ``start``/``end`` (the tree positions of each
    node's rows), ``lower``/``upper`` (each node's bounding box, (nodes, D)) and ``cols`` (D, M), the
    coordinates in tree order by column. Once ``stop[0]`` is set, the nodes left are empty.
    """
    m, d = points.shape
    levels = 1
    while (m + (1 << (levels - 1)) - 1) >> (levels - 1) > leaf_size:  # rows of the largest leaf
        levels += 1
    n_nodes = (1 << levels) - 1
    first_leaf = n_nodes >> 1
    start = np.zeros(n_nodes, dtype=np.int64)
    end = np.zeros(n_nodes, dtype=np.int64)
    lower = np.empty((n_nodes, d))
    upper = np.empty((n_nodes, d))
    order = np.arange(m)
    start[0], end[0] = 0, m
    for node in range(n_nodes):
        if stopped(stop):  # interrupted (see gpuseg._core.interrupts)
            break
        s, e = start[node], end[node]
        for k in range(d):
            lower[node, k] = np.inf
            upper[node, k] = -np.inf
        for p in range(s, e):
            r = order[p]
            for k in range(d):
                v = points[r, k]
                if v < lower[node, k]:
                    lower[node, k] = v
                if v > upper[node, k]:
                    upper[node, k] = v
        if node < first_leaf:
            dim, spread = 0, -1.0
            for k in range(d):
                if upper[node, k] - lower[node, k] > spread:
                    dim, spread = k, upper[node, k] - lower[node, k]
            mid = s + (e - s) // 2
            _select(order, points, dim, s, e, mid)
            c = 2 * node + 1
            start[c], end[c] = s, mid
            start[c + 1], end[c + 1] = mid, e
    cols = np.empty((d, m))
    for p in range(m):
        for k in range(d):
            cols[k, p] = points[order[p], k]
    return order.astype(index_dtype), start, end, lower, upper, cols


@njit(inline="always", cache=True)
def _room(idx, n, more):
    """``idx`` (its first ``n`` entries kept) with room for ``more`` entries after them, doubled as needed."""
    if n + more <= idx.shape[0]:
        return idx
    grown = np.empty(2 * idx.shape[0] + more, dtype=idx.dtype)
    grown[:n] = idx[:n]
    return grown


@njit(cache=True, nogil=True, error_model="numpy")
def query(cols, order, start, end, lower, upper, positions, eps2, count_only, stop):
    """Rows within eps of the rows at tree ``positions``: CSR lists ``(ptr, idx)`` of rows (``order``'s dtype),
    or only ``ptr`` (an empty ``idx``) when ``count_only``. A row is within eps when the squared differences
    summed over the columns in order are <= ``eps2``; a node is skipped when the same sum over the gaps
    between the row and the node's box exceeds ``eps2``, which can only be smaller than any of its rows' sums
    (rounding is monotonic), so no row within eps is ever skipped. The rows themselves are in their lists.
    Once ``stop[0]`` is set, the remaining lists are left empty."""
    n_nodes = start.shape[0]
    first_leaf = n_nodes >> 1
    d = cols.shape[0]
    widest = 0
    for node in range(first_leaf, n_nodes):
        widest = max(widest, end[node] - start[node])
    d2 = np.empty(widest)
    n_rows = positions.shape[0]
    idx = np.empty(0 if count_only else 16 * n_rows + 64, dtype=order.dtype)
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    stack = np.empty(2 * 64, dtype=np.int64)
    x = np.empty(d)
    n = 0
    for r in range(n_rows):
        if stopped(stop):  # interrupted (see gpuseg._core.interrupts)
            ptr[r + 1 :] = n
            break
        q = positions[r]
        for k in range(d):
            x[k] = cols[k, q]
        stack[0] = 0
        sp = 1
        while sp > 0:
            sp -= 1
            node = stack[sp]
            gap2 = 0.0
            far2 = 0.0
            for k in range(d):
                a = lower[node, k] - x[k]
                b = x[k] - upper[node, k]
                t = max(a, b, 0.0)
                gap2 += t * t
                t = max(-a, -b)
                far2 += t * t
            if gap2 > eps2:
                continue
            s, e = start[node], end[node]
            size = e - s
            if far2 <= eps2:  # the farthest corner of the box is within eps: so is every row in it
                if count_only:
                    n += size
                    continue
                idx = _room(idx, n, size)
                idx[n : n + size] = order[s:e]
                n += size
                continue
            if node < first_leaf:
                stack[sp] = 2 * node + 2
                stack[sp + 1] = 2 * node + 1
                sp += 2
                continue
            col = cols[0, s:e]
            xk = x[0]
            for i in range(size):
                t = xk - col[i]
                d2[i] = t * t
            for k in range(1, d):
                col = cols[k, s:e]
                xk = x[k]
                for i in range(size):
                    t = xk - col[i]
                    d2[i] += t * t
            if count_only:
                for i in range(size):
                    n += d2[i] <= eps2
                continue
            idx = _room(idx, n, size)
            for i in range(size):
                idx[n] = order[s + i]
                n += d2[i] <= eps2
        ptr[r + 1] = n
    return ptr, idx[:n].copy()


@njit(cache=True, nogil=True)
def count_weights(rows, ptr, idx, weights, min_samples, stop_at, core, stop):
    """core[rows[r]] = the weights of the rows in list r sum to at least ``min_samples``; a sum stops once it
    reaches ``stop_at`` (min_samples, or infinity when weights may be negative)."""
    for r in range(rows.shape[0]):
        if stopped(stop):
            return
        total = 0.0
        for n in range(ptr[r], ptr[r + 1]):
            total += weights[idx[n]]
            if total >= stop_at:
                break
        core[rows[r]] = total >= min_samples


@njit(cache=True, nogil=True)
def union_cores(rows, ptr, idx, core, parent, stop):
    """Join each core row with the core rows of its list that come before it (the lists are symmetric: the
    squared distance of a pair is the same both ways), the smaller root becoming the root. The root of the
    row is kept while its list is walked, so a neighbour already hanging from it costs one read."""
    for r in range(rows.shape[0]):
        if stopped(stop):
            return
        i = rows[r]
        if not core[i]:
            continue
        root = find(parent, i)
        for n in range(ptr[r], ptr[r + 1]):
            j = idx[n]
            if j >= i or not core[j] or parent[j] == root:
                continue
            other = find(parent, j)
            if other < root:
                parent[root] = other
                root = other
            elif root < other:
                parent[other] = root


@njit(cache=True, nogil=True)
def attach_borders(rows, ptr, idx, core, labels, stop):
    """A non-core row takes the smallest cluster number among the core rows of its list (-1 if none)."""
    for r in range(rows.shape[0]):
        if stopped(stop):
            return
        i = rows[r]
        if core[i]:
            continue
        best = -1
        for n in range(ptr[r], ptr[r + 1]):
            j = idx[n]
            if core[j] and (best < 0 or labels[j] < best):
                best = labels[j]
        labels[i] = best
