"""``/v1/ask``: one question about one uploaded video, whole or as server-sent events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from service import metrics
from service.asking import AskParams, AskStream, error_from_result
from service.auth import require_owner
from service.errors import NotFound, TempoError, Timeout
from service.queue import keys
from service.queue.producer import Event
from service.schemas import AskRequest, AskResponse
from service.sse import SSE_HEADERS, sse

router = APIRouter(tags=["ask"])


def to_response(result: dict[str, Any]) -> AskResponse:
    t = result["timings"]
    return AskResponse(
        id=result["job_id"], video_id=result["video_id"], answer=result["text"],
        finish_reason=result["finish_reason"],
        usage={"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
               "total_tokens": result["prompt_tokens"] + result["completion_tokens"]},
        timings=t, cache=result["cache"], segments=result["segments"], worker_id=result["worker_id"],
    )


def record(route: str, result: dict[str, Any]) -> None:
    metrics.TOKENS.labels(route).inc(result["completion_tokens"])
    metrics.ASKS.labels(result["cache"]["tier"]).inc()


@router.post("/v1/ask", response_model=AskResponse,
             responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream=true"}})
@router.post("/ask", response_model=AskResponse, include_in_schema=False)
async def ask(body: AskRequest, request: Request, owner: str = Depends(require_owner)):
    """Ask a question about a video. With ``stream: true``: SSE ``token`` events then one ``done`` event."""
    svc = request.app.state.asks
    params = AskParams(question=body.question, max_new_tokens=body.max_tokens, temperature=body.temperature,
                       top_p=body.top_p, seed=body.seed, visual_token_budget=body.visual_token_budget)
    stream = await svc.start(body.video_id, owner, params)
    if not body.stream:
        result = await svc.collect(stream)
        if result.get("completion_tokens"):
            metrics.TTFT.labels("ask").observe(result["timings"].get("first_token_s", 0.0) or 0.0)
        record("ask", result)
        return to_response(result)
    return StreamingResponse(_sse_events(stream, stream.events), media_type="text/event-stream", headers=SSE_HEADERS)


async def _sse_events(stream: AskStream | None, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    first = True
    try:
        async for ev in events:
            if ev.type == "token":
                if first and stream is not None:
                    metrics.TTFT.labels("ask").observe(time.monotonic() - stream.started_at)
                    first = False
                yield sse({"text": ev.data.get("text", ""), "token_id": ev.data.get("token_id")}, event="token", id=ev.id)
            elif ev.type == "done":
                record("ask", ev.data)
                yield sse(to_response(ev.data).model_dump(), event="done", id=ev.id)
            elif ev.type == "error":
                yield sse(error_from_result(ev.data).body(), event="error", id=ev.id)
    except TempoError as exc:
        yield sse(exc.body(), event="error")
    except TimeoutError as exc:
        yield sse(Timeout(str(exc)).body(), event="error")


@router.get("/v1/ask/{ask_id}/events", tags=["ask"])
async def ask_events(ask_id: str, request: Request, owner: str = Depends(require_owner),
                     last_event_id: str | None = Header(default=None)):
    """Re-attach to a streaming ask (the ``id`` of the done event, or any SSE ``id``); sends what followed ``Last-Event-ID``."""
    producer = request.app.state.producer
    if not await request.app.state.redis.exists(keys.tokens(ask_id)):
        raise NotFound(f"no ask with id {ask_id!r} (or its events expired)", code="ask_not_found")
    events = producer.tail(ask_id, last_event_id or "0", timeout_s=request.app.state.settings.ask_timeout_s)
    return StreamingResponse(_sse_events(None, events), media_type="text/event-stream", headers=SSE_HEADERS)
