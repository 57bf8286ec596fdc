"""Leaves that every layer uses: array helpers, the device, interrupts, memory, timing and caches.

Nothing here imports another part of gpuseg but :mod:`gpuseg.errors` and :mod:`gpuseg.params`.
"""
