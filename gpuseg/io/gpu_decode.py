"""Images onto the GPU ahead of clustering: decoded straight into GPU memory with NVIDIA nvImageCodec where it
is installed (``pip install 'gpuseg[gpu-decode]'``), else decoded on the CPU and copied through pinned host
memory on a stream of the decoding thread, while the previous image is being clustered."""

from __future__ import annotations

import os
import threading
from pathlib import Path

GPU_SUFFIXES = frozenset((".jpg", ".jpeg", ".jpe", ".jfif", ".jp2", ".j2k", ".jpf", ".tif", ".tiff"))
"""Formats nvImageCodec decodes on the GPU (nvJPEG, nvJPEG2000, nvTIFF)."""
_local = threading.local()


def available() -> bool:
    """Is nvImageCodec installed?"""
    try:
        from nvidia import nvimgcodec  # noqa: F401
    except ImportError:
        return False
    return True


def decodes(path: str | os.PathLike[str]) -> bool:
    """Does this file go to the GPU decoder (a format it decodes there, and nvImageCodec installed)?"""
    return Path(path).suffix.lower() in GPU_SUFFIXES and available()


def load_image_on_gpu(path: str | os.PathLike[str], *, max_pixels: int | None):
    """The image at ``path`` as an RGB CuPy array (H, W, 3), decoded on the GPU; the file is checked first as
    :func:`gpuseg.load_image` checks it. Images that are not 3-channel 8-bit go to :func:`gpuseg.load_image`.

    Raises
    ------
    ImageError
        As :func:`gpuseg.load_image`, or nvImageCodec could not decode the file.
    """
    import cupy

    from gpuseg.errors import ImageError
    from gpuseg.io.read import load_image, read_checked

    data, header, name = read_checked(path, max_pixels)
    if header.channels != 3 or header.itemsize != 1:
        return load_image(path, max_pixels=max_pixels)
    decoded = _decoder().decode(bytes(data))
    if decoded is None:
        raise ImageError(f"{name}: nvImageCodec could not decode it (damaged, or a variant it does not read)")
    image = cupy.asarray(decoded)
    turned = (header.width, header.height, 3)  # EXIF orientation may turn the image
    if image.shape not in ((header.height, header.width, 3), turned):
        raise ImageError(f"{name}: decoded as {image.shape}, not the {header.width}x{header.height} of its header")
    return image


def _decoder():
    """One nvImageCodec decoder per thread."""
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        from nvidia import nvimgcodec

        decoder = _local.decoder = nvimgcodec.Decoder()
    return decoder


DEVICE_BYTES_PER_PIXEL = 64
"""Device memory a clustering run takes per pixel, about (features, work arrays and labels): an image is
uploaded ahead only when its run would take at most half the free device memory; larger ones are left in
host memory for the engine, which clusters them in bands."""


def upload(image):
    """A host image copied to the GPU through pinned memory, on a non-blocking stream of the calling thread
    (a decoding thread: the copy overlaps the clustering of the image before); the host image itself when its
    run would not fit comfortably in free device memory."""
    import cupy
    import cupyx

    free, _ = cupy.cuda.Device().mem_info
    if image.shape[0] * image.shape[1] * DEVICE_BYTES_PER_PIXEL > free // 2:
        return image
    stream = getattr(_local, "stream", None)
    if stream is None:
        stream = _local.stream = cupy.cuda.Stream(non_blocking=True)
    pinned = cupyx.empty_pinned(image.shape, image.dtype)
    pinned[...] = image
    with stream:
        device = cupy.asarray(pinned)
    stream.synchronize()
    return device
