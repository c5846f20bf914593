"""The worker's writes to video records (status, progress, results of ingest).

Updates go through a Lua check so a video deleted while it was being ingested is not resurrected.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from service.queue import keys

_HSET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HSET', KEYS[1], unpack(ARGV))
end
return -1
"""


class VideoRecords:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._hset = client.register_script(_HSET_IF_EXISTS)

    def update(self, video_id: str, **fields: Any) -> bool:
        """False when the video no longer exists (deleted)."""
        flat: list[Any] = []
        for k, v in fields.items():
            flat += [k, json.dumps(v) if isinstance(v, dict) else v]
        return self._hset(keys=[keys.video(video_id)], args=flat) != -1

    def exists(self, video_id: str) -> bool:
        return bool(self.r.exists(keys.video(video_id)))

    def fail(self, video_id: str, code: str, message: str) -> None:
        self.update(video_id, status="failed", error={"code": code, "message": message})
