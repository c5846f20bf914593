"""OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``.

The video is a user content part ``{"type": "video_url", "video_url": {"url": ...}}`` whose url is
``tempo://videos/<id>`` (an uploaded video) or a base64 ``data:`` URL (ingested on the fly). The last
message is the question; earlier turns reach the LLM as chat history.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from service import metrics
from service.asking import AskParams, AskStream, error_from_result
from service.auth import require_owner
from service.errors import BadRequest, NotFound, TempoError
from service.routes.videos import register_upload
from service.schemas import ChatCompletionRequest, ChatMessage, ModelCard, ModelList
from service.sse import SSE_HEADERS, sse
from service.uploads import save_data_url

router = APIRouter(tags=["openai"])
TEMPO_URL = "tempo://videos/"
_STARTED = int(time.time())


def _text_of(msg: ChatMessage, idx: int) -> tuple[str, list[str]]:
    """(text, video urls) of one message."""
    if msg.content is None:
        return "", []
    if isinstance(msg.content, str):
        return msg.content, []
    texts, videos = [], []
    for part in msg.content:
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "video_url":
            url = (part.get("video_url") or {}).get("url") if isinstance(part.get("video_url"), dict) else None
            if not url:
                raise BadRequest("video_url part needs {\"video_url\": {\"url\": ...}}", param=f"messages[{idx}].content")
            videos.append(url)
        else:
            raise BadRequest(f"unsupported content part type {kind!r} (use text or video_url)",
                             param=f"messages[{idx}].content")
    return "\n".join(texts), videos


def parse_conversation(messages: list[ChatMessage]) -> tuple[str, str, list[dict[str, str]]]:
    """-> (video url, question, history)."""
    videos: list[str] = []
    turns: list[dict[str, str]] = []
    for i, msg in enumerate(messages):
        text, vids = _text_of(msg, i)
        if vids and msg.role != "user":
            raise BadRequest("video_url parts are only allowed in user messages", param=f"messages[{i}]")
        videos.extend(vids)
        turns.append({"role": "system" if msg.role == "developer" else msg.role, "content": text})
    if len(set(videos)) != 1:
        raise BadRequest("exactly one video per conversation: add a user content part "
                         "{\"type\": \"video_url\", \"video_url\": {\"url\": \"tempo://videos/<id>\"}}"
                         if not videos else "a conversation may reference only one video", param="messages")
    last = turns[-1]
    if messages[-1].role != "user" or not last["content"].strip():
        raise BadRequest("the last message must be a user message with a text question", param="messages")
    return videos[0], last["content"], turns[:-1]


async def _resolve_video(url: str, request: Request, owner: str) -> str:
    state = request.app.state
    if url.startswith(TEMPO_URL):
        video_id = url[len(TEMPO_URL):]
        await state.videos.get(video_id, owner)
        return video_id
    if url.startswith("data:"):
        upload = save_data_url(url, state.storage, state.settings.max_inline_video_bytes)
        return (await register_upload(request, upload, owner)).id
    raise BadRequest("video url must be tempo://videos/<id> or a base64 data: URL", param="messages")


def _completion(result: dict[str, Any], model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + result["job_id"], "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result["text"]},
                     "finish_reason": result["finish_reason"], "logprobs": None}],
        "usage": _usage(result),
        "tempo": {"video_id": result["video_id"], "segments": result["segments"], "cache": result["cache"],
                  "timings": result["timings"]},
    }


def _usage(result: dict[str, Any]) -> dict[str, int]:
    return {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"]}


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request, owner: str = Depends(require_owner)) -> ModelList:
    return ModelList(data=[ModelCard(id=request.app.state.settings.served_model_name, created=_STARTED)])


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request, owner: str = Depends(require_owner)):
    s = request.app.state.settings
    if body.model != s.served_model_name:
        raise NotFound(f"model {body.model!r} does not exist; use {s.served_model_name!r}", code="model_not_found",
                       param="model")
    url, question, history = parse_conversation(body.messages)
    video_id = await _resolve_video(url, request, owner)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    params = AskParams(question=question, max_new_tokens=body.max_completion_tokens or body.max_tokens,
                       temperature=body.temperature if body.temperature is not None else 0.0,
                       top_p=body.top_p if body.top_p is not None else 1.0, seed=body.seed, stop=stop,
                       history=history or None)
    stream = await request.app.state.asks.start(video_id, owner, params)
    if not body.stream:
        result = await request.app.state.asks.collect(stream)
        metrics.TOKENS.labels("chat").inc(result["completion_tokens"])
        metrics.ASKS.labels(result["cache"]["tier"]).inc()
        return _completion(result, body.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(_chunks(stream, body.model, include_usage), media_type="text/event-stream",
                             headers=SSE_HEADERS)


async def _chunks(stream: AskStream, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    cid = "chatcmpl-" + stream.job.job_id
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        if include_usage:
            body.setdefault("usage", None)
        return sse(body)

    yield chunk({"role": "assistant", "content": ""})
    first = True
    try:
        async for ev in stream.events:
            if ev.type == "token":
                if first:
                    metrics.TTFT.labels("chat").observe(time.monotonic() - stream.started_at)
                    first = False
                text = ev.data.get("text", "")
                if text:
                    yield chunk({"content": text})
            elif ev.type == "done":
                result = ev.data
                metrics.TOKENS.labels("chat").inc(result["completion_tokens"])
                metrics.ASKS.labels(result["cache"]["tier"]).inc()
                yield chunk({}, result["finish_reason"])
                if include_usage:
                    yield sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [], "usage": _usage(result)})
                break
            elif ev.type == "error":
                yield sse(error_from_result(ev.data).body())
                break
    except TempoError as exc:
        yield sse(exc.body())
    yield sse("[DONE]")
