"""The squared difference of two colour values, for colours held as float64 values or as integer codes
whose value is ``lut[code]``: one name, resolved by the compiler from the colour array's dtype, so the
kernels compile (and cache) once per kind of colour array."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload


def color_sqdiff(lut, a, b):
    """Plain-Python meaning of the compiled overload below."""
    d = (lut[a] - lut[b]) if isinstance(a, (int, np.integer)) else (a - b)
    return d * d


@overload(color_sqdiff, inline="always", target="generic")
def _color_sqdiff(lut, a, b):
    if isinstance(a, types.Integer):

        def from_codes(lut, a, b):
            d = lut[a] - lut[b]
            return d * d

        return from_codes

    def from_values(lut, a, b):
        d = a - b
        return d * d

    return from_values


def color_value(lut, c):
    """Plain-Python meaning of the compiled overload below: the float64 value of a colour code or value."""
    return lut[c] if isinstance(c, (int, np.integer)) else float(c)


@overload(color_value, inline="always", target="generic")
def _color_value(lut, c):
    if isinstance(c, types.Integer):
        return lambda lut, c: lut[c]
    return lambda lut, c: c
