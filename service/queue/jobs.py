"""Job records as they travel through the job streams, and the result/event envelopes."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any


def new_job_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class IngestJob:
    video_id: str
    path: str
    job_id: str = field(default_factory=lambda: new_job_id("ing"))
    enqueued_at: float = field(default_factory=time.time)

    kind = "ingest"


@dataclass
class AskJob:
    video_id: str
    path: str
    question: str
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    history: list[dict[str, str]] | None = None
    visual_token_budget: int = 8192
    max_length: int = 16384
    stream: bool = False
    job_id: str = field(default_factory=lambda: new_job_id("ask"))
    enqueued_at: float = field(default_factory=time.time)

    kind = "ask"


Job = IngestJob | AskJob


def encode_job(job: Job) -> dict[str, str]:
    """Stream entry fields: the kind, the job id (for the reaper's messages) and the JSON payload."""
    return {"kind": job.kind, "job_id": job.job_id, "payload": json.dumps(asdict(job))}


def decode_job(fields: dict[str, str]) -> Job:
    kind = fields.get("kind")
    payload: dict[str, Any] = json.loads(fields["payload"])
    if kind == "ingest":
        return IngestJob(**payload)
    if kind == "ask":
        return AskJob(**payload)
    raise ValueError(f"unknown job kind {kind!r}")
