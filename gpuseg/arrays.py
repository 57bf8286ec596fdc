"""Small helpers that work the same on NumPy and CuPy arrays, importing nothing of gpuseg (a leaf module)."""

from __future__ import annotations

import numpy as np


def array_module(array):
    """CuPy for a CuPy array, else NumPy (without importing CuPy)."""
    import sys

    return sys.modules["cupy"] if type(array).__module__.partition(".")[0] == "cupy" else np


def to_host(array):
    """A NumPy copy of a CuPy array; NumPy arrays as they are."""
    return array.get() if hasattr(array, "get") else array
