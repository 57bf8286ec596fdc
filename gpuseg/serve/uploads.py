"""Request bodies: read in memory with a size limit, the image field of a multipart form, and the image's
header checked against the pixel limit before anything is decoded."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from gpuseg.io.headers import BytesSource, HeaderError, ImageHeader, parse_header
from gpuseg.serve.errors import ServiceError


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from its
    Content-Length before reading, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, _too_large(int(declared), limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, _too_large(size, limit, "at least "))
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class _Part:
    """The form part being read: its current header's name and value, its field name and its data."""

    header: bytes = b""
    value: bytes = b""
    name: str | None = None
    data: list[bytes] = dataclasses.field(default_factory=list)


def _too_large(size: int, limit: int, at_least: str = "") -> str:
    return (
        f"the request body is {at_least}{size:,} bytes, more than the limit of {limit:,} bytes (--max-upload-mb "
        f"{limit / 2**20:g}); send a smaller file"
    )


def upload_field(body: bytes, content_type: str, field: str) -> bytes:
    """The bytes of ``field`` of a multipart/form-data body, or the body itself for any other content type
    (an image sent as it is, e.g. ``curl --data-binary @photo.png``). Parsed in memory: nothing goes to disk."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServiceError(422, "the multipart/form-data body has no boundary in its Content-Type")
    parts: dict[str, bytes] = {}
    part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.value += data[start:end]

    def on_header_end() -> None:
        if part.header.lower() == b"content-disposition":
            _, disposition = parse_options_header(part.value)
            part.name = disposition.get(b"name", b"").decode("latin-1")
        part.header, part.value = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part.data.append(bytes(data[start:end]))

    def on_part_end() -> None:
        if part.name is not None and part.name not in parts:
            parts[part.name] = b"".join(part.data)
        part.name, part.data = None, []

    callbacks: Any = {  # python-multipart's MultipartCallbacks
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart's errors: a damaged form is bad input
        raise ServiceError(422, f"the multipart/form-data body cannot be parsed ({exc})") from None
    if field not in parts:
        named = ", ".join(repr(name) for name in parts) or "none"
        raise ServiceError(
            422, f"the form has no field {field!r} (fields: {named}); send the file as -F {field}=@photo.png"
        )
    return parts[field]


def check_image(data: bytes, max_pixels: int, field: str = "image") -> ImageHeader:
    """The header of the uploaded image, read without decoding it.

    Raises
    ------
    ServiceError
        422 for an empty upload, 415 when it is not an image gpuseg reads (or its header is damaged),
        413 when its header claims more than ``max_pixels`` pixels.
    """
    if not data:
        raise ServiceError(422, f"{field}: the upload is empty; send the image file's bytes")
    try:
        header = parse_header(BytesSource(data))
    except HeaderError as exc:
        raise ServiceError(415, f"{field}: {exc}") from None
    if header.pixels > max_pixels:
        raise ServiceError(
            413,
            f"{field}: {header.width}x{header.height} = {header.pixels:,} pixels is more than the limit of "
            f"{max_pixels:,} (--max-pixels); send a smaller image",
        )
    return header
