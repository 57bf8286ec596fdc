"""Small helpers that work the same on NumPy and CuPy arrays, importing nothing of gpuseg (a leaf module)."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np

Array: TypeAlias = Any
"""A NumPy or a CuPy array: they share no type, so annotations say this one."""


def array_module(array: Array) -> Any:
    """CuPy for a CuPy array, else NumPy (without importing CuPy)."""
    import sys

    return sys.modules["cupy"] if type(array).__module__.partition(".")[0] == "cupy" else np


def to_host(array: Array) -> np.ndarray:
    """A NumPy copy of a CuPy array; NumPy arrays as they are."""
    return array.get() if hasattr(array, "get") else array
