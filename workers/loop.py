"""``tempo worker``: the loop that pulls batches of jobs from Redis and runs them.

Order of work each turn: this worker's own pending jobs (reclaimed from dead workers, or left by
its previous life), then up to ``ask_batch_size`` new asks (interactive, first), then up to
``ingest_batch_size`` new ingests, else block briefly on both streams. A job is acked only after
its result is stored. On SIGTERM the worker stops reading and finishes the batch in flight.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid

import redis

from service.queue import keys
from service.queue.consumer import (
    Consumer,
    Delivery,
    Heartbeat,
    Reaper,
    check_noeviction,
    ensure_groups,
    queue_stats,
)
from service.queue.jobs import AskJob, IngestJob
from service.queue.results import error_result, write_result
from service.settings import Settings
from workers import http, metrics
from workers.engine import Engine
from workers.records import VideoRecords

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        self.stop = threading.Event()
        self.engine: Engine | None = None
        self.consumer = Consumer(self.r, self.worker_id)
        self.records = VideoRecords(self.r)
        self.heartbeat = Heartbeat(redis.Redis.from_url(settings.redis_url, decode_responses=True), self.worker_id,
                                   settings.heartbeat_interval_s, settings.heartbeat_ttl_s)
        self.heartbeat.on_beat = self._on_beat
        self.http_port: int | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        check_noeviction(self.r)
        ensure_groups(self.r)
        if self.settings.worker_metrics_port >= 0:
            server = http.serve(self.settings.host, self.settings.worker_metrics_port, lambda: self.heartbeat.ready)
            self.http_port = server.server_port
            log.info("worker metrics listening", extra={"port": self.http_port})
        self.heartbeat.start()
        log.info("loading models", extra={"worker_id": self.worker_id})
        self.engine = Engine.load(self.settings, self.r, self.worker_id)
        self.heartbeat.ready = True
        metrics.READY.set(1)
        self.heartbeat.beat()
        threading.Thread(target=self._reap_forever, name="reaper", daemon=True).start()
        threading.Thread(target=self._listen_events, name="events", daemon=True).start()
        log.info("worker ready", extra={"worker_id": self.worker_id, "device": str(self.engine.pipe.device),
                                        "model_revision": self.engine.pipe.model_revision})
        try:
            while not self.stop.is_set():
                try:
                    self._turn()
                except redis.RedisError as exc:
                    # Unacked jobs stay in our pending list and are retried once Redis is back.
                    log.error("redis error, retrying", extra={"error": str(exc)})
                    self.stop.wait(1.0)
        finally:
            self.heartbeat.stop()
            log.info("worker stopped", extra={"worker_id": self.worker_id})
        return 0

    def _on_signal(self, signum: int, frame) -> None:
        log.info("stopping after the batch in flight", extra={"signal": signum})
        self.stop.set()

    def _on_beat(self) -> None:
        metrics.HEARTBEATS.inc()
        for name, s in queue_stats(self.heartbeat.r).items():
            metrics.QUEUE_DEPTH.labels(name).set(s["depth"])
            metrics.QUEUE_OLDEST.labels(name).set(s["oldest_age_s"])

    # --- the loop --------------------------------------------------------------------------------
    def _turn(self) -> None:
        s = self.settings
        for stream, count in ((keys.ASK_STREAM, s.ask_batch_size), (keys.INGEST_STREAM, s.ingest_batch_size)):
            batch = self.consumer.read_pending(stream, count)
            if batch:
                return self._run_batch(batch)
        batch = self.consumer.read_new({keys.ASK_STREAM: s.ask_batch_size})
        if not batch:
            batch = self.consumer.read_new({keys.INGEST_STREAM: s.ingest_batch_size})
        if not batch:
            batch = self.consumer.read_any(keys.JOB_STREAMS, block_ms=1000)
            if batch and batch[0].stream == keys.ASK_STREAM and s.ask_batch_size > 1:
                # Something arrived: gather the rest of the batch that came with it.
                time.sleep(s.batch_wait_ms / 1000)
                batch += self.consumer.read_new({keys.ASK_STREAM: s.ask_batch_size - 1})
        if batch:
            self._run_batch(batch)

    def _run_batch(self, batch: list[Delivery]) -> None:
        metrics.BATCH_SIZE.labels(batch[0].queue).observe(len(batch))
        asks: list[Delivery] = []
        for d in batch:
            if d.job is None:
                if d.fields:
                    self.consumer.dead_letter(d, d.error or "undecodable")
                else:
                    self.consumer.ack(d)  # deleted entry
            elif isinstance(d.job, IngestJob):
                self._run_ingest(d)
            else:
                asks.append(d)
        if asks:
            self._run_asks(asks)

    def _run_ingest(self, d: Delivery) -> None:
        t0 = time.perf_counter()
        outcome = "ok"
        assert self.engine is not None and isinstance(d.job, IngestJob)
        try:
            self.engine.ingest(d.job, self.records)
        except redis.RedisError:
            raise  # the outcome is not durable: leave the job pending for a retry
        except Exception:  # noqa: BLE001 - a job must never kill the worker
            log.exception("ingest crashed", extra={"job_id": d.job.job_id})
            outcome = "error"
            self.records.fail(d.job.video_id, "worker_error", "the worker failed on this video")
        self._done(d, outcome, time.perf_counter() - t0)

    def _run_asks(self, deliveries: list[Delivery]) -> None:
        """The asks of the batch in one batched model pass, which new asks join while it has free
        decode slots (continuous batching across pulls). Each result is stored, then its job acked,
        as soon as that job finishes."""
        t0 = time.perf_counter()
        assert self.engine is not None
        waiting: dict[str, Delivery] = {}

        def admit(batch: list[Delivery]) -> list[AskJob]:
            jobs = []
            for d in batch:
                if d.job is None:  # undecodable (to the dead letters) or deleted entry (just acked)
                    if d.fields:
                        self.consumer.dead_letter(d, d.error or "undecodable")
                    else:
                        self.consumer.ack(d)
                    continue
                assert isinstance(d.job, AskJob)
                waiting[d.job.job_id] = d
                if not self.records.exists(d.job.video_id):
                    store(d.job, error_result(404, "video_not_found", f"video {d.job.video_id} was deleted"))
                else:
                    jobs.append(d.job)
            return jobs

        def store(job: AskJob, result: dict) -> None:
            d = waiting.pop(job.job_id)
            write_result(self.r, job.job_id, result)
            self._done(d, "ok" if result.get("ok") else "error", time.perf_counter() - t0)

        def fetch_more(n: int) -> list[AskJob]:
            if self.stop.is_set():
                return []  # SIGTERM: finish what is running, take nothing new
            return admit(self.consumer.read_new({keys.ASK_STREAM: n}))

        runnable = admit(deliveries)
        try:
            self.engine.ask_batch(runnable, fetch_more=fetch_more, on_result=store)
        except redis.RedisError:
            raise  # results not stored yet are not durable: their jobs stay pending for a retry
        except Exception:  # noqa: BLE001 - a batch must never kill the worker
            log.exception("ask batch crashed", extra={"jobs": list(waiting)})
        for d in list(waiting.values()):  # anything the batch did not report
            store(d.job, error_result(500, "worker_error", "the worker failed on this job"))

    def _done(self, d: Delivery, outcome: str, seconds: float) -> None:
        self.consumer.ack(d)
        metrics.JOBS.labels(d.queue, outcome).inc()
        metrics.JOB_SECONDS.labels(d.queue).observe(seconds)
        log.info("job done", extra={"job_id": d.job.job_id, "queue": d.queue, "outcome": outcome,
                                    "seconds": round(seconds, 3)})

    # --- background threads ----------------------------------------------------------------------
    def _on_dead(self, d: Delivery, reason: str) -> None:
        metrics.DEAD.inc()
        if isinstance(d.job, AskJob):
            write_result(self.r, d.job.job_id, error_result(500, "job_crashed", f"the job failed: {reason}"))
        elif isinstance(d.job, IngestJob):
            self.records.fail(d.job.video_id, "job_crashed", f"ingest failed: {reason}")

    def _reap_forever(self) -> None:
        client = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        reaper = Reaper(client, self.worker_id, self.settings.max_deliveries, on_dead=self._on_dead)
        while not self.stop.wait(self.settings.reaper_interval_s):
            try:
                rep = reaper.reap_once()
                metrics.RECLAIMED.inc(len(rep.claimed))
            except redis.RedisError as exc:
                log.warning("reaper failed", extra={"error": str(exc)})

    def _listen_events(self) -> None:
        """Drop memory-tier cache entries of deleted videos."""
        while not self.stop.is_set():
            try:
                pubsub = redis.Redis.from_url(self.settings.redis_url, decode_responses=True).pubsub()
                pubsub.subscribe(keys.EVENTS_CHANNEL)
                while not self.stop.is_set():
                    msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg and isinstance(msg.get("data"), str) and msg["data"].startswith("deleted "):
                        assert self.engine is not None
                        self.engine.cache.drop_video(msg["data"].split(" ", 1)[1])
            except redis.RedisError as exc:
                log.warning("event listener reconnecting", extra={"error": str(exc)})
                time.sleep(1)


def main(settings: Settings) -> int:
    return Worker(settings).run()
