"""Pydantic models of the public API (REST and the OpenAI-compatible subset)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# --- videos -----------------------------------------------------------------------------------


class VideoUrlIngest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    id: str
    object: Literal["video"] = "video"
    status: Literal["queued", "processing", "ready", "failed"]
    progress: int = Field(ge=0, le=100)
    size_bytes: int
    filename: str | None = None
    created_at: float
    duration_s: float | None = None
    frames_sampled: int | None = None
    segments: int | None = None
    error: VideoError | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class Deleted(BaseModel):
    id: str
    object: Literal["video"] = "video"
    deleted: bool = True


# --- ask --------------------------------------------------------------------------------------


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    video_id: str
    question: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    visual_token_budget: int | None = Field(default=None, ge=1)
    stream: bool = False


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(BaseModel):
    queued_s: float
    compress_s: float
    prefill_s: float
    decode_s: float
    total_s: float


class CacheInfo(BaseModel):
    hit: bool
    tier: Literal["gpu", "host", "disk", "none"]


class Segment(BaseModel):
    index: int
    start_s: float
    end_s: float
    relevance: float
    tokens_kept: int


class AskResponse(BaseModel):
    id: str
    object: Literal["answer"] = "answer"
    video_id: str
    answer: str
    finish_reason: Literal["stop", "length"]
    usage: Usage
    timings: Timings
    cache: CacheInfo
    segments: list[Segment]
    worker_id: str


# --- OpenAI chat completions ------------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1, le=1)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tempo"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
