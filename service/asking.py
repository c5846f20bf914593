"""From a validated question to a queued ask job and back: wait for the video, enqueue, collect.

Shared by ``/v1/ask`` and ``/v1/chat/completions``. The worker validates what only the model can
(the question's token count) and reports it as an ``error`` event before ``start``; so the gateway
reads up to the first event before it commits to a status code, and a streaming client still gets
a proper 4xx for a bad question.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from service.errors import BadRequest, Conflict, Timeout, from_status
from service.queue.jobs import AskJob
from service.queue.producer import Event, Producer
from service.settings import Settings
from service.videos import VideoRecord, VideoRegistry


@dataclass
class AskParams:
    question: str
    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    history: list[dict[str, str]] | None = None
    visual_token_budget: int | None = None


@dataclass
class AskStream:
    """An accepted ask: events after ``start``; ``started_at`` for time-to-first-token."""

    job: AskJob
    events: AsyncIterator[Event]
    started_at: float = field(default_factory=time.monotonic)


class AskService:
    def __init__(self, settings: Settings, videos: VideoRegistry, producer: Producer) -> None:
        self.settings = settings
        self.videos = videos
        self.producer = producer

    async def wait_ready(self, video_id: str, owner: str) -> VideoRecord:
        deadline = time.monotonic() + self.settings.ask_wait_for_video_s
        while True:
            rec = await self.videos.get(video_id, owner)
            if rec.status == "ready":
                return rec
            if rec.status == "failed":
                err = rec.error or {}
                raise Conflict(f"video {video_id} failed to process: {err.get('message', 'unknown error')}",
                               code="video_failed")
            if time.monotonic() > deadline:
                raise Timeout(f"video {video_id} is still {rec.status} after {self.settings.ask_wait_for_video_s:.0f}s",
                              code="video_not_ready")
            await asyncio.sleep(0.2)

    def _job(self, rec: VideoRecord, p: AskParams) -> AskJob:
        s = self.settings
        max_new = p.max_new_tokens or s.default_max_new_tokens
        if max_new > s.max_new_tokens_limit:
            raise BadRequest(f"max_tokens {max_new} exceeds the limit of {s.max_new_tokens_limit}", param="max_tokens")
        seed = p.seed
        if seed is None and p.temperature > 0:
            # A fixed seed makes a reclaimed retry regenerate the same tokens the client already saw.
            seed = random.randrange(2**31)
        return AskJob(
            video_id=rec.id, path=str(self.videos.storage.video_path(rec.id)), question=p.question,
            max_new_tokens=max_new, temperature=p.temperature, top_p=p.top_p, seed=seed, stop=p.stop,
            history=p.history, visual_token_budget=p.visual_token_budget or s.visual_token_budget,
            max_length=s.max_length,
        )

    async def start(self, video_id: str, owner: str, params: AskParams) -> AskStream:
        rec = await self.wait_ready(video_id, owner)
        job = self._job(rec, params)
        started = time.monotonic()
        await self.producer.enqueue(job)
        events = self.producer.tail(job.job_id, timeout_s=self.settings.ask_timeout_s).__aiter__()
        try:
            first = await events.__anext__()
        except TimeoutError as exc:
            raise Timeout(str(exc), code="ask_timeout") from exc
        if first.type == "error":
            raise error_from_result(first.data)
        if first.type == "done":
            return AskStream(job, _prepend(first, events), started)
        return AskStream(job, _guard(events), started)

    async def collect(self, stream: AskStream) -> dict[str, Any]:
        async for ev in stream.events:
            if ev.type == "error":
                raise error_from_result(ev.data)
            if ev.type == "done":
                return ev.data
        raise Timeout("the ask ended without a result", code="ask_timeout")


def error_from_result(data: dict[str, Any]):
    err = data.get("error") or {}
    return from_status(int(err.get("status", 500)), err.get("message", "the worker failed"), err.get("code"))


async def _prepend(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    yield first
    async for ev in rest:
        yield ev


async def _guard(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    try:
        async for ev in events:
            yield ev
    except TimeoutError as exc:
        raise Timeout(str(exc), code="ask_timeout") from exc
