"""Worker-side writes of what a job produced: per-ask token events and the durable result.

A result is stored under its job id with SET, so writing the same result twice (a reclaimed job
that had already finished) is harmless. Events go to the ask's own token stream; the last one is
``done`` or ``error`` and the stream expires an hour later (Redis runs with noeviction, so
everything we write must either be deleted or expire).
"""

from __future__ import annotations

import json
from typing import Any

import redis

from service.queue import keys


def append_event(client: redis.Redis, job_id: str, type_: str, data: dict[str, Any] | None = None) -> str:
    key = keys.tokens(job_id)
    pipe = client.pipeline(transaction=False)
    pipe.xadd(key, {"type": type_, "data": json.dumps(data or {})})
    pipe.expire(key, keys.TOKENS_TTL_S)
    return pipe.execute()[0]


def token_events_emitted(client: redis.Redis, job_id: str) -> int:
    """How many token events an earlier attempt of this job already streamed."""
    n = 0
    for _, fields in client.xrange(keys.tokens(job_id)):
        if fields.get("type") == "token":
            n += 1
    return n


def write_result(client: redis.Redis, job_id: str, result: dict[str, Any]) -> None:
    """Store the final result (``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``) then signal it."""
    client.set(keys.result(job_id), json.dumps(result), ex=keys.RESULT_TTL_S)
    append_event(client, job_id, "done" if result.get("ok") else "error", result)


def error_result(status: int, code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"status": status, "code": code, "message": message}}
