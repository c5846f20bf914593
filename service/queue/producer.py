"""The gateway's side of the queue (async): enqueue jobs, tail an ask's token stream, read results."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from service.queue import keys
from service.queue.jobs import AskJob, IngestJob, encode_job


@dataclass
class Event:
    id: str  # the Redis stream entry id, used as the SSE event id
    type: str  # start | token | reset | done | error
    data: dict[str, Any]


class Producer:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    async def enqueue(self, job: AskJob | IngestJob) -> str:
        stream = keys.ASK_STREAM if isinstance(job, AskJob) else keys.INGEST_STREAM
        # No MAXLEN: trimming a job stream silently drops jobs. Workers delete jobs once acked.
        return await self.r.xadd(stream, encode_job(job))

    async def result(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.r.get(keys.result(job_id))
        return json.loads(raw) if raw else None

    async def tail(self, job_id: str, last_id: str = "0", *, timeout_s: float, block_ms: int = 1000) -> AsyncIterator[Event]:
        """Yield the ask's events after ``last_id`` until ``done``/``error``; reconnects pass their last id.

        Raises ``TimeoutError`` when nothing final arrived within ``timeout_s``.
        """
        key = keys.tokens(job_id)
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no result for job {job_id} within {timeout_s:.0f}s")
            reply = await self.r.xread({key: last_id}, count=256, block=int(min(block_ms, remaining * 1000)) or 1)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    event = Event(entry_id, fields.get("type", ""), json.loads(fields.get("data") or "{}"))
                    yield event
                    if event.type in ("done", "error"):
                        return
