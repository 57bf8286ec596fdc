"""Squared colour differences, for colours held as float64 values or as integer codes with a lookup table.

The grid engine is compiled once per kind of colour array; these are passed to it as arguments.
"""

from __future__ import annotations

from numba import njit


@njit(inline="always", cache=True)
def code_sqdiff(lut, a, b):
    d = lut[a] - lut[b]
    return d * d


@njit(inline="always", cache=True)
def value_sqdiff(lut, a, b):
    d = a - b
    return d * d
