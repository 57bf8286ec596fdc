"""Shared helpers: seeded randomness (fixed by default, fresh on request) and a brute-force oracle."""

from __future__ import annotations

import os
import secrets
import struct
import zlib

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


PROMPTLY_S = 10.0
"""A stop or an answer within this many seconds is prompt. A loaded machine delays either by seconds, so the
bound is generous; the work that would otherwise hold it up is made to take far longer (each test says how long),
so that a stop that waits for the work still fails."""


INTERRUPTED_CALL = """
import os, signal, threading, time
import numpy as np
import gpuseg
from gpuseg._core.interrupts import compute_threads_alive

{setup}
{warm_up}  # compiled
threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    {call}
    print("finished")
except KeyboardInterrupt:
    raised = time.monotonic() - start
    while compute_threads_alive():
        time.sleep(0.01)
    print("interrupted", round(raised, 2), round(time.monotonic() - start - raised, 2))
"""


def interrupt_library_call(setup: str, warm_up: str, call: str) -> tuple[float, float]:
    """Run ``call`` (after ``setup`` and a compiling ``warm_up``) in a fresh Python, send it SIGINT after a
    second, and return (seconds until KeyboardInterrupt reached the caller, seconds until its compiled work
    had stopped after that)."""
    import signal
    import subprocess
    import sys

    script = INTERRUPTED_CALL.format(setup=setup, warm_up=warm_up, call=call)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    words = proc.stdout.split()
    assert words and words[0] == "interrupted", proc.stdout + proc.stderr
    return float(words[1]), float(words[2])


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header (signature and IHDR) claiming an RGB image of ``width`` x ``height``."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
