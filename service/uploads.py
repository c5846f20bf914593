"""Streaming upload bodies into storage without holding them in memory.

Accepted bodies: ``multipart/form-data`` with a file part (the first part that has a filename, or
the part named ``file``), or a raw body with a ``video/*`` / ``application/octet-stream`` type.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from service.storage import HashingWriter, Storage, StoredFile


@dataclass
class Upload:
    stored: StoredFile
    filename: str | None


def _check_declared_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise PayloadTooLarge(f"upload of {declared} bytes exceeds the limit of {max_bytes} bytes")


async def save_raw_body(request: Request, storage: Storage, max_bytes: int) -> Upload:
    _check_declared_length(request, max_bytes)
    stored = await storage.save_stream(request.stream(), max_bytes)
    return Upload(stored, request.headers.get("x-filename"))


class _FilePart:
    """Multipart callbacks that route the file part's bytes into a HashingWriter."""

    def __init__(self, writer: HashingWriter) -> None:
        self.writer = writer
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.in_file = False
        self.found = False
        self.filename: str | None = None

    def on_part_begin(self) -> None:
        self.headers = {}
        self.in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if not self.found and (filename is not None or name == "file"):
            self.in_file = self.found = True
            self.filename = filename.decode("utf-8", "replace") if filename else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.writer.write(data[start:end])

    def on_part_end(self) -> None:
        self.in_file = False

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
            "on_headers_finished", "on_part_data", "on_part_end")}


async def save_multipart(request: Request, storage: Storage, max_bytes: int) -> Upload:
    _check_declared_length(request, max_bytes)
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart body without a boundary", code="bad_multipart")
    writer = storage.open_writer(max_bytes)
    part = _FilePart(writer)
    try:
        parser = MultipartParser(boundary, part.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if not part.found:
            raise BadRequest("multipart body has no file part (send the video as form field 'file')", code="no_file")
        return Upload(writer.commit(), part.filename)
    except MultipartParseError as exc:
        raise BadRequest(f"malformed multipart body: {exc}", code="bad_multipart") from exc
    finally:
        writer.discard()


def save_data_url(url: str, storage: Storage, max_bytes: int) -> Upload:
    """``data:video/mp4;base64,...`` from a chat message; checks the size before decoding."""
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise BadRequest("video data URL must look like data:video/mp4;base64,<data>", code="bad_data_url")
    mime = header[5:].split(";")[0]
    if mime and not (mime.startswith("video/") or mime == "application/octet-stream"):
        raise UnsupportedMedia(f"data URL media type {mime!r} is not a video", code="not_a_video")
    if len(payload) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"inline video exceeds the limit of {max_bytes} bytes")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"video data URL is not valid base64: {exc}", code="bad_data_url") from exc
    writer = storage.open_writer(max_bytes)
    try:
        writer.write(raw)
        return Upload(writer.commit(), None)
    finally:
        writer.discard()


async def save_upload(request: Request, storage: Storage, max_bytes: int) -> Upload:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return await save_multipart(request, storage, max_bytes)
    if ctype.startswith("video/") or ctype == "application/octet-stream":
        return await save_raw_body(request, storage, max_bytes)
    raise UnsupportedMedia(
        f"unsupported content type {ctype or '(none)'!r}: send multipart/form-data with a 'file' part, "
        "a raw video/* body, or JSON {\"url\": ...}", code="unsupported_content_type")
