"""Errors as HTTP statuses: the library's exceptions mapped to 4xx with its own message, never a 500 for bad
input (a 500 means a bug in gpuseg)."""

from __future__ import annotations

from gpuseg.errors import DeviceError, EngineUnavailableError, GpusegError, ImageError, MemoryLimitError


class ServiceError(Exception):
    """An answer other than 200: ``status``, the message (the response's ``detail``) and extra headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def from_library(exc: Exception) -> ServiceError | None:
    """The answer to an exception a job raised, or None when it is not one gpuseg raises for bad input.

    - ValueError (a parameter the library refuses, e.g. an engine that does not take this input): 422;
    - MemoryLimitError (the run would need more memory than the machine has now): 413, send a smaller image;
    - DeviceError (the GPU is not usable or ran out of memory): 503, the service's device cannot run it now;
    - EngineUnavailableError (the engine's library is not installed here): 422, ask for another engine;
    - ImageError (the image cannot be decoded) and any other GpusegError: 422.
    """
    if isinstance(exc, MemoryLimitError):
        return ServiceError(413, str(exc))
    if isinstance(exc, DeviceError):
        return ServiceError(503, str(exc), {"Retry-After": "10"})
    if isinstance(exc, EngineUnavailableError | ImageError | GpusegError | ValueError):
        return ServiceError(422, str(exc))
    return None
