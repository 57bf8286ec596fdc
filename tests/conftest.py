"""Shared helpers: seeded randomness (fixed by default, fresh on request) and a brute-force oracle."""

from __future__ import annotations

import os
import secrets

import numpy as np
import pytest

# GPU kernels run under numba's CUDA simulator unless a real GPU run is asked for with
# NUMBA_ENABLE_CUDASIM=0 (numba reads this when it is first imported, which is after this file).
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


DEFAULT_SEED = 20261127


@pytest.fixture
def rng(request):
    """A generator with a fixed seed, so that a failure reproduces; ``GPUSEG_TEST_SEED=random`` draws a fresh
    seed (printed on failure), ``GPUSEG_TEST_SEED=N`` reruns one."""
    asked = os.environ.get("GPUSEG_TEST_SEED", str(DEFAULT_SEED))
    seed = secrets.randbits(32) if asked == "random" else int(asked)
    request.node.user_properties.append(("seed", seed))
    print(f"random seed: {seed} (rerun with GPUSEG_TEST_SEED={seed})")
    return np.random.default_rng(seed)


def sqdist_matrix(X: np.ndarray) -> np.ndarray:
    """Squared distances summed column by column, in column order: the documented tie rule."""
    d2 = np.zeros((X.shape[0], X.shape[0]))
    for k in range(X.shape[1]):
        d2 += (X[:, k, None] - X[None, :, k]) ** 2
    return d2


def oracle_dbscan(X: np.ndarray, eps: float, min_samples: int, weights=None) -> np.ndarray:
    """DBSCAN written plainly from its definition (scikit-learn's traversal order), O(N^2), for small N."""
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    near = sqdist_matrix(X) <= eps * eps
    core = near.astype(float) @ w >= min_samples
    labels = np.full(n, -1)
    label = 0
    for i in range(n):
        if labels[i] != -1 or not core[i]:
            continue
        stack = [i]
        while stack:
            j = stack.pop()
            if labels[j] != -1:
                continue
            labels[j] = label
            if core[j]:
                stack.extend(np.flatnonzero(near[j] & (labels == -1)).tolist())
        label += 1
    return labels


def has_near_ties(X: np.ndarray, eps: float, rel: float = 1e-9) -> bool:
    """Is some pair's distance within rel * eps of eps, where rounding decides?"""
    d = np.sqrt(sqdist_matrix(X))
    return bool((np.abs(d - eps) <= rel * eps).any())
