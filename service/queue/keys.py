"""Every Redis key and stream name Tempo Serve uses. The Helm chart depends on the stream names."""

from __future__ import annotations

INGEST_STREAM = "tempo:jobs:ingest"
ASK_STREAM = "tempo:jobs:ask"
JOB_STREAMS = (INGEST_STREAM, ASK_STREAM)
QUEUE_NAMES = {INGEST_STREAM: "ingest", ASK_STREAM: "ask"}
DEAD_LETTER_STREAM = "tempo:jobs:dead"
GROUP = "tempo-workers"
EVENTS_CHANNEL = "tempo:events"  # pub/sub: "deleted <video_id>"

RESULT_TTL_S = 24 * 3600
TOKENS_TTL_S = 3600


def heartbeat(worker_id: str) -> str:
    return f"tempo:worker:{worker_id}:hb"


HEARTBEAT_PATTERN = "tempo:worker:*:hb"


def result(job_id: str) -> str:
    return f"tempo:result:{job_id}"


def tokens(job_id: str) -> str:
    """The per-ask stream of generated tokens, tailed by the gateway with XREAD BLOCK."""
    return f"tempo:ask:{job_id}:tokens"


def video(video_id: str) -> str:
    return f"tempo:video:{video_id}"


def video_owners(video_id: str) -> str:
    return f"tempo:video:{video_id}:owners"


def owner_videos(owner: str) -> str:
    return f"tempo:videos:owner:{owner}"
