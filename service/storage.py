"""Uploaded videos on disk, addressed by content hash.

Bytes are streamed to a temporary file in the storage directory while being hashed; the file is
then renamed to ``videos/<id>/source``. The same bytes uploaded twice are one video. The segment
cache of the workers lives beside it under ``cache/<id>/`` so deleting a video removes both.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from service.errors import BadRequest, PayloadTooLarge

ID_PREFIX = "vid_"
ID_HEX = 32


def is_video_id(value: str) -> bool:
    hexpart = value[len(ID_PREFIX):]
    return value.startswith(ID_PREFIX) and len(hexpart) == ID_HEX and all(c in "0123456789abcdef" for c in hexpart)


@dataclass
class StoredFile:
    video_id: str
    path: Path
    size: int
    created: bool  # False when these bytes were already stored


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "videos").mkdir(parents=True, exist_ok=True)
        (self.root / "cache").mkdir(parents=True, exist_ok=True)

    def video_path(self, video_id: str) -> Path:
        return self.root / "videos" / video_id / "source"

    def cache_dir(self, video_id: str) -> Path:
        return self.root / "cache" / video_id

    def open_writer(self, max_bytes: int) -> HashingWriter:
        return HashingWriter(self, max_bytes)

    async def save_stream(self, chunks: AsyncIterator[bytes], max_bytes: int) -> StoredFile:
        writer = self.open_writer(max_bytes)
        try:
            async for chunk in chunks:
                writer.write(chunk)
            return writer.commit()
        finally:
            writer.discard()

    def delete(self, video_id: str) -> None:
        shutil.rmtree(self.root / "videos" / video_id, ignore_errors=True)
        shutil.rmtree(self.cache_dir(video_id), ignore_errors=True)


class HashingWriter:
    """Writes chunks to a temp file, hashing them and enforcing the size limit as they come."""

    def __init__(self, storage: Storage, max_bytes: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.tmp = storage.root / "tmp" / uuid.uuid4().hex
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/discard
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(f"upload exceeds the limit of {self.max_bytes} bytes")
        self.sha.update(chunk)
        self.fh.write(chunk)

    def commit(self) -> StoredFile:
        self.fh.close()
        if self.size == 0:
            raise BadRequest("the uploaded file is empty", code="empty_file")
        video_id = ID_PREFIX + self.sha.hexdigest()[:ID_HEX]
        dest = self.storage.video_path(video_id)
        if dest.exists():
            return StoredFile(video_id, dest, self.size, created=False)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, dest)
        return StoredFile(video_id, dest, self.size, created=True)

    def discard(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)
