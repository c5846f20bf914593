"""The segment cache: a video's question-independent encoding, kept in GPU, host and disk tiers.

Entries are keyed by video id, model revision and the preprocessing settings, so a new checkpoint
or a different frame size never reads a stale entry. Disk entries live under
``<storage>/cache/<video_id>/<variant>/`` (written by ``VideoEncoding.save``, whose ``meta.json`` is
the commit mark), so any worker sharing the storage volume, or a restarted one, finds them, and
deleting a video removes its directory. Each tier is an LRU bounded in bytes; a lookup that misses
every tier returns None and the caller recomputes the entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheKey:
    video_id: str
    model_revision: str
    preprocessing: str  # canonical JSON of the settings that change the encoding

    @classmethod
    def make(cls, video_id: str, model_revision: str, **preprocessing: Any) -> CacheKey:
        return cls(video_id, model_revision, json.dumps(preprocessing, sort_keys=True))

    @property
    def variant(self) -> str:
        return hashlib.sha256(f"{self.model_revision}|{self.preprocessing}".encode()).hexdigest()[:24]


class _MemoryTier:
    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.entries: OrderedDict[CacheKey, Any] = OrderedDict()
        self.bytes = 0

    def get(self, key: CacheKey) -> Any | None:
        enc = self.entries.get(key)
        if enc is not None:
            self.entries.move_to_end(key)
        return enc

    def put(self, key: CacheKey, enc: Any) -> None:
        # The tier keeps its own record (sharing the tensors): shrinking it later never takes the
        # prefix KV away from a caller still answering with ``enc``.
        enc = enc.to(enc.device)
        if enc.nbytes > self.capacity and enc.prefix_kv is not None:
            enc.prefix_kv = None  # too big with its SVLM KV cache: keep the vision features only
        if enc.nbytes > self.capacity:
            return
        self.drop(key)
        self.entries[key] = enc
        self.bytes += enc.nbytes
        while self.bytes > self.capacity:
            self._shrink_or_evict()
        metrics.CACHE_BYTES.labels(self.name).set(self.bytes)

    def _shrink_or_evict(self) -> None:
        """Make room: first drop the prefix KV cache (large, recomputable in one SVLM pass) of the
        least recently used entry that has one, and only then evict whole entries, oldest first."""
        for old_key, old in self.entries.items():
            if old.prefix_kv is not None:
                before = old.nbytes
                old.prefix_kv = None
                self.bytes -= before - old.nbytes
                log.info("segment cache dropped prefix KV", extra={"tier": self.name, "video_id": old_key.video_id})
                return
        old_key, old = self.entries.popitem(last=False)
        self.bytes -= old.nbytes
        metrics.CACHE_EVICTIONS.labels(self.name).inc()
        log.info("segment cache eviction", extra={"tier": self.name, "video_id": old_key.video_id})

    def drop(self, key: CacheKey) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes
            metrics.CACHE_BYTES.labels(self.name).set(self.bytes)

    def drop_video(self, video_id: str) -> None:
        for key in [k for k in self.entries if k.video_id == video_id]:
            self.drop(key)


class SegmentCache:
    def __init__(self, root: Path, *, gpu_device: str | None, gpu_bytes: int, host_bytes: int, disk_bytes: int) -> None:
        self.root = Path(root)
        self.gpu_device = gpu_device  # None when the worker runs on CPU: no GPU tier
        self.gpu = _MemoryTier("gpu", gpu_bytes) if gpu_device else None
        self.host = _MemoryTier("host", host_bytes)
        self.disk_bytes = disk_bytes
        self._lock = threading.RLock()

    def path(self, key: CacheKey) -> Path:
        return self.root / key.video_id / key.variant

    def get(self, key: CacheKey) -> tuple[Any, str] | None:
        """-> (encoding on the best device, tier it came from), or None on a miss."""
        from models.tempo import VideoEncoding

        with self._lock:
            if self.gpu is not None and (enc := self.gpu.get(key)) is not None:
                return self._hit(enc, "gpu")
            if (enc := self.host.get(key)) is not None:
                if self.gpu is not None:
                    dev = enc.to(self.gpu_device, keep_prefix_kv=False)
                    self.gpu.put(key, dev)
                    return self._hit(dev, "host")
                return self._hit(enc, "host")
        path = self.path(key)
        if (path / "meta.json").is_file():
            try:
                enc = VideoEncoding.load(path, device="cpu")
            except (OSError, ValueError, KeyError) as exc:
                log.warning("unreadable disk cache entry, recomputing", extra={"path": str(path), "error": str(exc)})
                shutil.rmtree(path, ignore_errors=True)
            else:
                (path / "meta.json").touch()  # LRU clock for the disk tier
                with self._lock:
                    self.host.put(key, enc)
                    if self.gpu is not None:
                        enc = enc.to(self.gpu_device)
                        self.gpu.put(key, enc)
                return self._hit(enc, "disk")
        metrics.CACHE_MISSES.inc()
        return None

    def _hit(self, enc: Any, tier: str) -> tuple[Any, str]:
        metrics.CACHE_HITS.labels(tier).inc()
        return enc, tier

    def put(self, key: CacheKey, enc: Any) -> None:
        """Store an encoding in every tier: disk and host without the SVLM prefix KV cache (GBs for
        an hour of video, recomputed in one SVLM pass), the GPU tier with it while it fits."""
        path = self.path(key)
        enc.save(path)
        host = enc.to("cpu", keep_prefix_kv=False)
        with self._lock:
            self.host.put(key, host)
            if self.gpu is not None:
                self.gpu.put(key, enc if str(enc.device) != "cpu" else enc.to(self.gpu_device))
        self._evict_disk()

    def gpu_can_hold(self, nbytes: int) -> bool:
        return self.gpu is not None and nbytes <= self.gpu.capacity

    def put_gpu(self, key: CacheKey, enc: Any) -> None:
        """Replace the GPU-tier copy (e.g. after attaching a recomputed prefix KV cache)."""
        if self.gpu is not None:
            with self._lock:
                self.gpu.put(key, enc)

    def drop_video(self, video_id: str) -> None:
        with self._lock:
            if self.gpu is not None:
                self.gpu.drop_video(video_id)
            self.host.drop_video(video_id)
        shutil.rmtree(self.root / video_id, ignore_errors=True)

    def _evict_disk(self) -> None:
        entries = []
        total = 0
        for meta in self.root.glob("*/*/meta.json"):
            d = meta.parent
            size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            entries.append((meta.stat().st_mtime, size, d))
            total += size
        metrics.CACHE_BYTES.labels("disk").set(total)
        entries.sort()
        while total > self.disk_bytes and entries:
            _, size, d = entries.pop(0)
            shutil.rmtree(d, ignore_errors=True)
            total -= size
            metrics.CACHE_EVICTIONS.labels("disk").inc()
            log.info("segment cache eviction", extra={"tier": "disk", "path": str(d), "at": time.time()})
        metrics.CACHE_BYTES.labels("disk").set(total)
