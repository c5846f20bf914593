"""The worker's side of the queue: consumer groups, batches, acks, heartbeats and the reaper.

A job is acknowledged (XACK, then XDEL so the stream only holds unfinished jobs) only after its
result is durable in Redis. A worker that dies leaves its jobs in the group's pending list; the
reaper of any live worker reclaims them, but only once the owner's heartbeat key has expired:
idle time alone is not liveness, a long job is not a dead worker. Each reclaim counts as a
delivery; a job delivered ``max_deliveries`` times goes to the dead-letter stream instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from service.queue import keys
from service.queue.jobs import Job, decode_job

log = logging.getLogger(__name__)


class RedisConfigError(RuntimeError):
    """Redis is configured so that it may drop our data (an eviction policy other than noeviction)."""


def check_noeviction(client: redis.Redis) -> None:
    """Refuse to run against a Redis that may evict keys: evicting a job or a result loses it."""
    policy = client.info("memory").get("maxmemory_policy")
    if policy != "noeviction":
        raise RedisConfigError(
            f"Redis maxmemory-policy is {policy!r}; Tempo Serve needs 'noeviction' "
            "(redis-server --maxmemory-policy noeviction, or CONFIG SET maxmemory-policy noeviction)"
        )


def ensure_groups(client: redis.Redis, streams: tuple[str, ...] = keys.JOB_STREAMS) -> None:
    for stream in streams:
        try:
            client.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


@dataclass
class Delivery:
    stream: str
    entry_id: str
    job: Job | None
    fields: dict[str, str]
    error: str | None = None  # why the entry could not be decoded

    @property
    def queue(self) -> str:
        return keys.QUEUE_NAMES.get(self.stream, self.stream)


def _deliveries(client: redis.Redis, reply: list) -> list[Delivery]:
    out: list[Delivery] = []
    for stream, entries in reply or []:
        for entry_id, fields in entries:
            fields = fields or {}
            try:
                job = decode_job(fields) if fields else None
                out.append(Delivery(stream, entry_id, job, fields, None if fields else "entry deleted"))
            except (KeyError, ValueError, TypeError) as exc:
                out.append(Delivery(stream, entry_id, None, fields, f"undecodable job: {exc}"))
    return out


class Consumer:
    """One worker's membership in the ``tempo-workers`` group."""

    def __init__(self, client: redis.Redis, worker_id: str) -> None:
        self.r = client
        self.worker_id = worker_id

    def read_pending(self, stream: str, count: int) -> list[Delivery]:
        """Jobs already delivered to this consumer and not acked: reclaimed ones, or from a previous life."""
        reply = self.r.xreadgroup(keys.GROUP, self.worker_id, {stream: "0"}, count=count)
        return _deliveries(self.r, reply)

    def read_new(self, streams: dict[str, int], block_ms: int | None = None) -> list[Delivery]:
        """``XREADGROUP COUNT N`` over the given streams (one call per count value)."""
        out: list[Delivery] = []
        for stream, count in streams.items():
            reply = self.r.xreadgroup(keys.GROUP, self.worker_id, {stream: ">"}, count=count, block=block_ms)
            out.extend(_deliveries(self.r, reply))
        return out

    def read_any(self, streams: tuple[str, ...], block_ms: int) -> list[Delivery]:
        reply = self.r.xreadgroup(keys.GROUP, self.worker_id, {s: ">" for s in streams}, count=1, block=block_ms)
        return _deliveries(self.r, reply)

    def ack(self, delivery: Delivery) -> None:
        """Call only after the job's result is durable."""
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(delivery.stream, keys.GROUP, delivery.entry_id)
        pipe.xdel(delivery.stream, delivery.entry_id)
        pipe.execute()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(
            keys.DEAD_LETTER_STREAM,
            {**delivery.fields, "stream": delivery.stream, "entry_id": delivery.entry_id, "reason": reason},
        )
        pipe.xack(delivery.stream, keys.GROUP, delivery.entry_id)
        pipe.xdel(delivery.stream, delivery.entry_id)
        pipe.execute()
        log.warning("job dead-lettered", extra={"stream": delivery.stream, "entry_id": delivery.entry_id, "reason": reason})


class Heartbeat:
    """Keeps ``tempo:worker:<id>:hb`` alive (TTL) from a thread of its own, so a long job never lets it lapse."""

    def __init__(self, client: redis.Redis, worker_id: str, interval_s: float, ttl_s: float) -> None:
        self.r = client
        self.worker_id = worker_id
        self.interval_s = interval_s
        self.ttl_ms = int(ttl_s * 1000)
        self.ready = False
        self.started_at = time.time()
        self.on_beat: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def beat(self) -> None:
        info = {"worker_id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
                "ready": self.ready, "started_at": self.started_at, "at": time.time()}
        self.r.set(keys.heartbeat(self.worker_id), json.dumps(info), px=self.ttl_ms)
        if self.on_beat:
            self.on_beat()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)})

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.r.delete(keys.heartbeat(self.worker_id))
        except redis.RedisError:
            pass


def alive_workers(client: redis.Redis) -> list[dict]:
    out = []
    for key in client.scan_iter(match=keys.HEARTBEAT_PATTERN, count=100):
        raw = client.get(key)
        if raw:
            out.append(json.loads(raw))
    return out


@dataclass
class ReapReport:
    claimed: list[str]
    dead: list[str]


class Reaper:
    """Reclaims jobs pending on consumers whose heartbeat expired; dead-letters those over the cap."""

    def __init__(self, client: redis.Redis, worker_id: str, max_deliveries: int, min_idle_ms: int = 1000,
                 on_dead: Callable[[Delivery, str], None] | None = None) -> None:
        self.r = client
        self.worker_id = worker_id
        self.max_deliveries = max_deliveries
        self.min_idle_ms = min_idle_ms
        self.on_dead = on_dead

    def _owner_alive(self, consumer: str, cache: dict[str, bool]) -> bool:
        if consumer == self.worker_id:
            return True
        if consumer not in cache:
            cache[consumer] = bool(self.r.exists(keys.heartbeat(consumer)))
        return cache[consumer]

    def reap_once(self) -> ReapReport:
        report = ReapReport([], [])
        alive: dict[str, bool] = {}
        for stream in keys.JOB_STREAMS:
            try:
                pending = self.r.xpending_range(stream, keys.GROUP, min="-", max="+", count=1000)
            except redis.ResponseError:  # group not created yet
                continue
            for p in pending:
                owner, entry_id = p["consumer"], p["message_id"]
                if self._owner_alive(owner, alive):
                    continue
                # JUSTID does not bump the delivery counter; reading it back from our PEL does.
                claimed = self.r.xclaim(stream, keys.GROUP, self.worker_id, self.min_idle_ms, [entry_id], justid=True)
                if not claimed:
                    continue  # another reaper got it first
                if p["times_delivered"] >= self.max_deliveries:
                    entries = self.r.xrange(stream, min=entry_id, max=entry_id)
                    fields = entries[0][1] if entries else {}
                    dl = _deliveries(self.r, [(stream, [(entry_id, fields)])])[0]
                    reason = f"delivered {p['times_delivered']} times; each worker died while running it"
                    if self.on_dead:
                        self.on_dead(dl, reason)
                    Consumer(self.r, self.worker_id).dead_letter(dl, reason)
                    report.dead.append(entry_id)
                else:
                    report.claimed.append(entry_id)
                    log.info("reclaimed job of dead worker",
                             extra={"stream": stream, "entry_id": entry_id, "from_worker": owner})
            self._forget_dead_consumers(stream, alive)
        return report

    def _forget_dead_consumers(self, stream: str, alive: dict[str, bool]) -> None:
        for c in self.r.xinfo_consumers(stream, keys.GROUP):
            name = c["name"]
            if c["pending"] == 0 and not self._owner_alive(name, alive):
                self.r.xgroup_delconsumer(stream, keys.GROUP, name)


def queue_stats(client: redis.Redis) -> dict[str, dict[str, float]]:
    """Depth (unfinished jobs: queued + in flight) and oldest job age per queue.

    Acked jobs are deleted from their stream, so the stream length is the depth and its first
    entry the oldest unfinished job.
    """
    now_ms = time.time() * 1000
    out: dict[str, dict[str, float]] = {}
    for stream, name in keys.QUEUE_NAMES.items():
        depth = client.xlen(stream)
        first = client.xrange(stream, count=1)
        age = (now_ms - int(first[0][0].split("-")[0])) / 1000 if first else 0.0
        out[name] = {"depth": float(depth), "oldest_age_s": max(0.0, age)}
    return out
