"""Every setting of Tempo Serve, read from the environment (prefix ``TEMPO_``) or flags.

The gateway and the workers share this one class so that a deployment sets each value once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TEMPO_", env_file=None, extra="ignore")

    # --- shared -------------------------------------------------------------------------------
    redis_url: str = "redis://localhost:6379/0"
    storage_dir: Path = Path("var/storage")
    log_level: str = "INFO"
    log_json: bool = False

    # --- model (workers) ------------------------------------------------------------------------
    model_path: Path | None = Field(default=None, description="Tempo-6B checkpoint dir; unset = tiny test model")
    svlm_path: Path | None = Field(default=None, description="Qwen3-VL-2B-Instruct dir; unset = resolved from config")
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    decode_slots: int = Field(default=8, ge=1, description="sequences decoded together (continuous batching)")
    decode_max_seq: int = Field(default=0, ge=0, description="KV cache tokens per sequence; 0 = max_length + max_new_tokens_limit")
    compile_kernels: bool = True  # on CUDA: fuse the LLM decoder's elementwise kernels (torch.compile, first use)

    # --- limits -------------------------------------------------------------------------------
    max_upload_bytes: int = 4 * 1024**3
    max_inline_video_bytes: int = 64 * 1024**2  # base64 data URLs in chat completions
    max_video_duration_s: float = 4 * 3600.0
    sampling_mode: Literal["exact", "fast"] = "exact"  # fast: nearest keyframe per sample (docs/benchmarks.md)
    max_frame_edge: int = 512  # preprocessing: longest edge of a sampled frame (part of the cache key)
    max_question_tokens: int = 2048
    max_new_tokens_limit: int = 4096
    default_max_new_tokens: int = 512
    visual_token_budget: int = 8192
    max_length: int = 16384
    allow_url_ingest: bool = False

    # --- gateway ------------------------------------------------------------------------------
    host: str = "0.0.0.0"
    port: int = 8000
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ask_wait_for_video_s: float = 600.0
    ask_timeout_s: float = 900.0
    served_model_name: str = "tempo-6b"

    # --- queue / workers ----------------------------------------------------------------------
    worker_id: str | None = None
    ask_batch_size: int = 8
    ingest_batch_size: int = 1
    batch_wait_ms: int = 5
    heartbeat_interval_s: float = 2.0
    heartbeat_ttl_s: float = 10.0
    reaper_interval_s: float = 2.0
    max_deliveries: int = 3
    worker_metrics_port: int = 9100

    # --- segment cache ------------------------------------------------------------------------
    # GPU tier: an hour of video is ~1 GiB of vision features + ~8.4 GiB of SVLM prefix KV (full size)
    cache_gpu_bytes: int = 24 * 1024**3
    cache_host_bytes: int = 16 * 1024**3
    cache_disk_bytes: int = 200 * 1024**3

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
