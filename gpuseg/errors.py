"""The project's exceptions: one base class, so callers (and the CLI) catch one type."""

from __future__ import annotations


class GpusegError(Exception):
    """Base class of every error gpuseg raises on purpose."""


class ImageError(GpusegError):
    """An image could not be read: missing, unreadable, empty or too large."""


class DeviceError(GpusegError):
    """A CUDA device was asked for and is not usable."""


class EngineUnavailableError(GpusegError):
    """An engine was asked for whose library is not installed or cannot run this input."""


class MemoryLimitError(GpusegError):
    """An engine would need more memory than the machine has."""


class OutputExistsError(GpusegError):
    """An output file exists and overwriting was not allowed."""
