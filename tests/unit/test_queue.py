"""The Redis Streams queue against a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio as aioredis

from service.queue import keys
from service.queue.consumer import (
    Consumer,
    Heartbeat,
    Reaper,
    RedisConfigError,
    check_noeviction,
    ensure_groups,
    queue_stats,
)
from service.queue.jobs import AskJob, IngestJob, encode_job
from service.queue.producer import Producer
from service.queue.results import append_event, error_result, write_result


def _ask(i: int = 0) -> AskJob:
    return AskJob(video_id="v", path="/x", question=f"q{i}", max_new_tokens=4)


def _enqueue(r: redis.Redis, job) -> str:
    stream = keys.ASK_STREAM if job.kind == "ask" else keys.INGEST_STREAM
    return r.xadd(stream, encode_job(job))


def test_batch_read_ack_and_depth(r):
    ensure_groups(r)
    for i in range(5):
        _enqueue(r, _ask(i))
    _enqueue(r, IngestJob(video_id="v", path="/x"))
    c = Consumer(r, "w1")
    batch = c.read_new({keys.ASK_STREAM: 3})
    assert [d.job.question for d in batch] == ["q0", "q1", "q2"]
    assert queue_stats(r)["ask"]["depth"] == 5  # in flight still counts until acked
    for d in batch:
        c.ack(d)
    stats = queue_stats(r)
    assert stats["ask"]["depth"] == 2 and stats["ingest"]["depth"] == 1
    assert stats["ask"]["oldest_age_s"] >= 0
    rest = c.read_new({keys.ASK_STREAM: 10, keys.INGEST_STREAM: 1})
    assert sorted(d.job.kind for d in rest) == ["ask", "ask", "ingest"]
    # Nothing is pending for another consumer of the group: each job went to exactly one reader.
    assert Consumer(r, "w2").read_new({keys.ASK_STREAM: 10}) == []


def test_no_trimming_of_job_streams(r):
    ensure_groups(r)
    for i in range(1500):
        _enqueue(r, _ask(i))
    assert r.xlen(keys.ASK_STREAM) == 1500


def test_reaper_leaves_jobs_of_live_workers_and_reclaims_dead_ones(r):
    ensure_groups(r)
    _enqueue(r, _ask(1))
    hb = Heartbeat(r, "busy", interval_s=0.1, ttl_s=0.5)
    hb.start()
    busy = Consumer(r, "busy")
    (d,) = busy.read_new({keys.ASK_STREAM: 1})
    time.sleep(0.7)  # job idle longer than the heartbeat TTL, but the owner is alive
    reaper = Reaper(r, "rescuer", max_deliveries=3, min_idle_ms=0)
    assert reaper.reap_once().claimed == []
    hb._stop.set()  # the worker "dies": its heartbeat stops and expires
    hb._thread.join()
    time.sleep(0.7)
    assert reaper.reap_once().claimed == [d.entry_id]
    assert reaper.reap_once().claimed == []  # now owned by a live consumer (itself)
    (again,) = Consumer(r, "rescuer").read_pending(keys.ASK_STREAM, 10)
    assert again.job.question == "q1"


def test_delivery_cap_sends_to_dead_letter(r):
    ensure_groups(r)
    entry = _enqueue(r, _ask(7))
    dead: list[str] = []
    Consumer(r, "a").read_new({keys.ASK_STREAM: 1})  # delivery 1, "a" has no heartbeat: dead
    for name in ("b", "c"):
        Reaper(r, name, max_deliveries=3, min_idle_ms=0).reap_once()
        assert Consumer(r, name).read_pending(keys.ASK_STREAM, 1)[0].entry_id == entry  # delivery 2, 3
    rep = Reaper(r, "d", max_deliveries=3, min_idle_ms=0,
                 on_dead=lambda dl, why: dead.append(dl.job.question)).reap_once()
    assert rep.dead == [entry] and dead == ["q7"]
    assert r.xlen(keys.ASK_STREAM) == 0
    (dl,) = r.xrange(keys.DEAD_LETTER_STREAM)
    assert dl[1]["entry_id"] == entry and "delivered 3 times" in dl[1]["reason"]


def test_noeviction_check(r):
    check_noeviction(r)
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(RedisConfigError, match="noeviction"):
            check_noeviction(r)
    finally:
        r.config_set("maxmemory-policy", "noeviction")


def test_tail_resumes_after_last_id_and_results_are_idempotent(r, redis_server):
    append_event(r, "j1", "start")
    first = append_event(r, "j1", "token", {"text": "a"})
    append_event(r, "j1", "token", {"text": "b"})
    write_result(r, "j1", {"ok": True, "text": "ab"})
    write_result(r, "j1", {"ok": True, "text": "ab"})  # a reclaimed job finishing twice is harmless

    async def go():
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        p = Producer(client)
        events = [e async for e in p.tail("j1", first, timeout_s=5)]
        res = await p.result("j1")
        with pytest.raises(TimeoutError):
            async for _ in p.tail("nothing", timeout_s=0.3, block_ms=100):
                pass
        await client.aclose()
        return events, res

    events, res = asyncio.run(go())
    assert [e.type for e in events] == ["token", "done"] and events[0].data == {"text": "b"}
    assert res == {"ok": True, "text": "ab"}
    assert r.ttl(keys.tokens("j1")) > 0 and r.ttl(keys.result("j1")) > 0
    assert error_result(400, "x", "m")["error"]["status"] == 400
