"""Video records in Redis (status, progress, owners), the gateway's side.

``tempo:video:<id>`` is a hash written by the gateway at upload and by the worker during ingest.
Owners are API-key fingerprints; a video is visible only to keys that uploaded it (or to everyone
when API keys are off). Deleting removes the record, the file and its segment cache entries.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from service.errors import NotFound
from service.queue import keys
from service.storage import Storage, StoredFile, is_video_id


@dataclass
class VideoRecord:
    id: str
    status: str
    progress: int = 0
    size_bytes: int = 0
    filename: str | None = None
    created_at: float = 0.0
    duration_s: float | None = None
    frames_sampled: int | None = None
    segments: int | None = None
    error: dict[str, Any] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, video_id: str, h: dict[str, str]) -> VideoRecord:
        def num(name: str, conv):
            v = h.get(name)
            return conv(v) if v not in (None, "") else None

        return cls(
            id=video_id,
            status=h.get("status", "queued"),
            progress=int(float(h.get("progress") or 0)),
            size_bytes=int(h.get("size_bytes") or 0),
            filename=h.get("filename") or None,
            created_at=float(h.get("created_at") or 0),
            duration_s=num("duration_s", float),
            frames_sampled=num("frames_sampled", int),
            segments=num("segments", int),
            error=json.loads(h["error"]) if h.get("error") else None,
        )


class VideoRegistry:
    def __init__(self, client: aioredis.Redis, storage: Storage) -> None:
        self.r = client
        self.storage = storage

    async def register(self, stored: StoredFile, owner: str, filename: str | None) -> tuple[VideoRecord, bool]:
        """Create the record if these bytes are new; returns (record, needs_ingest)."""
        key = keys.video(stored.video_id)
        now = time.time()
        created = await self.r.hsetnx(key, "status", "queued")
        if created:
            await self.r.hset(key, mapping={"progress": 0, "size_bytes": stored.size,
                                            "filename": filename or "", "created_at": now})
        pipe = self.r.pipeline(transaction=True)
        pipe.sadd(keys.video_owners(stored.video_id), owner)
        pipe.zadd(keys.owner_videos(owner), {stored.video_id: now}, nx=True)
        await pipe.execute()
        return await self.get(stored.video_id, owner), bool(created)

    async def get(self, video_id: str, owner: str) -> VideoRecord:
        if not is_video_id(video_id):
            raise NotFound(f"no video with id {video_id!r}", code="video_not_found", param="video_id")
        if not await self.r.sismember(keys.video_owners(video_id), owner):
            raise NotFound(f"no video with id {video_id!r}", code="video_not_found", param="video_id")
        h = await self.r.hgetall(keys.video(video_id))
        if not h:
            raise NotFound(f"no video with id {video_id!r}", code="video_not_found", param="video_id")
        return VideoRecord.from_hash(video_id, h)

    async def list(self, owner: str, limit: int, offset: int) -> tuple[list[VideoRecord], int]:
        total = await self.r.zcard(keys.owner_videos(owner))
        ids = await self.r.zrevrange(keys.owner_videos(owner), offset, offset + limit - 1)
        out = []
        for vid in ids:
            h = await self.r.hgetall(keys.video(vid))
            if h:
                out.append(VideoRecord.from_hash(vid, h))
        return out, total

    async def delete(self, video_id: str, owner: str) -> None:
        await self.get(video_id, owner)
        pipe = self.r.pipeline(transaction=True)
        pipe.srem(keys.video_owners(video_id), owner)
        pipe.zrem(keys.owner_videos(owner), video_id)
        pipe.scard(keys.video_owners(video_id))
        *_, remaining = await pipe.execute()
        if remaining == 0:
            await self.r.delete(keys.video(video_id), keys.video_owners(video_id))
            self.storage.delete(video_id)
            await self.r.publish(keys.EVENTS_CHANNEL, f"deleted {video_id}")
