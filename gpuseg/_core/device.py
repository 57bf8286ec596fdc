"""CUDA detection, CuPy import and the reason for a CPU fallback."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Literal

from gpuseg.errors import DeviceError
from gpuseg.params import check


@dataclass(frozen=True)
class GpuStatus:
    """What CUDA looks like from here: ``usable`` with the device's name and memory, or the reason not."""

    usable: bool
    name: str | None = None
    total_memory: int | None = None
    free_memory: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Device:
    """Where a run goes: ``kind`` is "cpu" or "gpu"; ``fallback_reason`` says why auto chose the CPU."""

    kind: Literal["cpu", "gpu"]
    name: str
    fallback_reason: str | None = None

    @property
    def xp(self) -> Any:
        """The array module of this device: CuPy on the GPU, NumPy on the CPU."""
        if self.kind == "gpu":
            import cupy

            return cupy
        import numpy

        return numpy

    def synchronize(self) -> None:
        if self.kind == "gpu":
            import cupy

            cupy.cuda.get_current_stream().synchronize()


@functools.cache
def gpu_status() -> GpuStatus:
    """Probe CuPy and the CUDA driver once (the probe takes a moment, so it is cached)."""
    if os.environ.get("GPUSEG_DISABLE_GPU"):
        return GpuStatus(False, reason="GPUSEG_DISABLE_GPU is set")
    try:
        import cupy
    except ImportError:
        return GpuStatus(False, reason="CuPy is not installed (pip install 'gpuseg[gpu]')")
    except Exception as exc:  # a broken CUDA install raises at import
        return GpuStatus(False, reason=f"CuPy failed to import: {exc}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy raises its own CUDARuntimeError for a missing or old driver
        return GpuStatus(False, reason=f"CUDA driver error: {exc}")
    if count == 0:
        return GpuStatus(False, reason="CuPy found no CUDA device")
    try:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        free, total = cupy.cuda.Device().mem_info
    except Exception as exc:
        return GpuStatus(False, reason=f"CUDA device error: {exc}")
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return GpuStatus(True, name=name, total_memory=int(total), free_memory=int(free))


def cpu_name() -> str:
    """The CPU's model name and core count, for reports."""
    model = "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        import platform

        model = platform.processor() or "CPU"
    return f"{model} ({os.cpu_count()} cores)"


def cpu_fallback(reason: str) -> Device:
    """The CPU, chosen instead of a GPU for ``reason`` (recorded as the report's fallback_reason)."""
    return Device("cpu", cpu_name(), fallback_reason=reason)


def resolve_device(device: str) -> Device:
    """Turn "auto", "cpu" or "gpu" into a :class:`Device`.

    Raises
    ------
    ValueError
        ``device`` is not one of auto, cpu, gpu.
    DeviceError
        ``device="gpu"`` and no usable CUDA device (never a silent CPU run).
    """
    check("device", device)
    if device == "cpu":
        return Device("cpu", cpu_name())
    status = gpu_status()
    if status.usable:
        return Device("gpu", status.name or "GPU")
    if device == "gpu":
        raise DeviceError(f"device='gpu' was asked for, but {status.reason}; use device='cpu' or 'auto'")
    return cpu_fallback(status.reason or "no usable GPU")
