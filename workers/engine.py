"""The model side of a worker: runs ingest and ask jobs with a loaded TempoPipeline.

Ingest decodes the video once, encodes it (the question-independent work) and stores the encoding
in the segment cache. Ask takes the encoding from the cache (recomputing it transparently after an
eviction) and generates the answer, streaming each token to the ask's Redis stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from service.errors import VIDEO_ERROR_STATUS
from service.queue.jobs import AskJob, IngestJob
from service.queue.results import append_event, error_result, token_events_emitted
from service.settings import Settings
from workers import metrics
from workers.cache import CacheKey, SegmentCache
from workers.records import VideoRecords

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """A job that cannot succeed (bad input): reported to the client, never retried."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def classify(exc: BaseException) -> JobFailed:
    """Model-package errors -> (status, code). Unknown errors are 500s; the worker stays up either way."""
    if isinstance(exc, JobFailed):
        return exc
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if code in VIDEO_ERROR_STATUS:
        return JobFailed(VIDEO_ERROR_STATUS[code], code, message)
    if code == "bad_input":
        return JobFailed(400, code, message)
    return JobFailed(500, "worker_error", f"the worker failed: {type(exc).__name__}: {message}")


@dataclass
class Engine:
    settings: Settings
    pipe: Any  # models.tempo.TempoPipeline
    cache: SegmentCache
    redis: redis.Redis
    worker_id: str

    @classmethod
    def load(cls, settings: Settings, client: redis.Redis, worker_id: str) -> Engine:
        from models.tempo import TempoPipeline

        pipe = TempoPipeline.from_pretrained(settings.model_path, settings.svlm_path, device=settings.device,
                                             dtype=settings.dtype, decode_slots=settings.decode_slots,
                                             # a slot holds the longest prompt plus the longest answer
                                             decode_max_seq=settings.decode_max_seq
                                             or settings.max_length + settings.max_new_tokens_limit,
                                             compile_kernels=None if settings.compile_kernels else False)
        if pipe.device.type == "cuda":  # compile + first graphs now, before the worker says it is ready
            log.info("warming up", extra={"seconds": round(pipe.warm_up(), 2)})
        gpu = str(pipe.device) if pipe.device.type == "cuda" else None
        cache = SegmentCache(Path(settings.storage_dir) / "cache", gpu_device=gpu, gpu_bytes=settings.cache_gpu_bytes,
                             host_bytes=settings.cache_host_bytes, disk_bytes=settings.cache_disk_bytes)
        return cls(settings, pipe, cache, client, worker_id)

    # --- shared ---------------------------------------------------------------------------------
    def cache_key(self, video_id: str) -> CacheKey:
        return CacheKey.make(video_id, self.pipe.model_revision, max_edge=self.settings.max_frame_edge, sampler=f"tempo-v1-{self.settings.sampling_mode}")

    def _decode_and_encode(self, path: str, progress: Callable[[float], None] | None = None) -> tuple[Any, Any]:
        from models.video import decode_sampled_frames

        if not Path(path).is_file():
            raise JobFailed(404, "video_not_found", "the video file no longer exists (deleted?)")
        video = decode_sampled_frames(path, max_duration_s=self.settings.max_video_duration_s,
                                      max_bytes=self.settings.max_upload_bytes, max_edge=self.settings.max_frame_edge,
                                      progress=progress, mode=self.settings.sampling_mode)
        metrics.VIDEOS_DECODED.inc()
        return video, self.pipe.encode(video.frames, video.fps)

    # --- ingest -----------------------------------------------------------------------------------
    def ingest(self, job: IngestJob, records: VideoRecords) -> None:
        t0 = time.perf_counter()
        if not records.update(job.video_id, status="processing", progress=0):
            log.info("ingest skipped: video deleted", extra={"video_id": job.video_id})
            return
        last = [0.0]

        def progress(fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] > 0.5:
                last[0] = now
                records.update(job.video_id, progress=int(min(fraction, 1.0) * 90))

        try:
            video, enc = self._decode_and_encode(job.path, progress)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the video's error
            failed = classify(exc)
            log.info("ingest failed", extra={"video_id": job.video_id, "code": failed.code, "error": failed.message})
            records.fail(job.video_id, failed.code, failed.message)
            return
        key = self.cache_key(job.video_id)
        self.cache.put(key, enc)
        if not records.update(job.video_id, status="ready", progress=100, duration_s=video.duration_s,
                              frames_sampled=int(video.frames.shape[0]), segments=enc.num_segments,
                              model_revision=self.pipe.model_revision):
            self.cache.drop_video(job.video_id)  # deleted while we worked
            return
        elapsed = time.perf_counter() - t0
        metrics.INGEST_SECONDS.observe(elapsed)
        log.info("ingest done", extra={"video_id": job.video_id, "segments": enc.num_segments, "seconds": round(elapsed, 3)})

    # --- ask ------------------------------------------------------------------------------------
    def _encoding_for(self, job: AskJob) -> tuple[Any, str]:
        """The video's cached encoding (recomputed after an eviction) and the tier that served it.

        On a GPU the encoding also carries the SVLM prefix KV cache; an entry that lost it (host or
        disk hit, or dropped to make room) gets it back in one SVLM pass over the prefixes, when
        the GPU tier can hold the result.
        """
        key = self.cache_key(job.video_id)
        hit = self.cache.get(key)
        if hit is None:
            log.info("segment cache miss, re-encoding", extra={"video_id": job.video_id})
            _, enc = self._decode_and_encode(job.path)
            self.cache.put(key, enc)
            return enc, "none"
        enc, tier = hit
        if (self.pipe.device.type == "cuda" and enc.prefix_kv is None
                and self.cache.gpu_can_hold(enc.nbytes + self.pipe.prefix_kv_nbytes(enc))):
            # Worth it only if the GPU tier keeps it: recomputing costs about what it saves once.
            self.pipe.attach_prefix_kv(enc)
            self.cache.put_gpu(key, enc)
        return enc, tier

    def ask_batch(
        self,
        jobs: list[AskJob],
        fetch_more: Callable[[int], list[AskJob]] | None = None,
        on_result: Callable[[AskJob, dict[str, Any]], None] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Answer several questions in one batched pass; returns job id -> result to store.

        ``fetch_more(n)`` is asked for up to ``n`` further jobs while decode slots are free: they join
        the running batch. ``on_result(job, result)`` is called as each job finishes, so its result
        can be stored (and the job acked) without waiting for the rest. A job with bad input gets its
        error result; the others are answered. Tokens stream to each job's Redis stream.
        """
        from models.tempo import AskRequest

        s = self.settings
        results: dict[str, dict[str, Any]] = {}
        live: dict[int, tuple[AskJob, str, float]] = {}  # id(request) -> (job, cache tier, start time)
        first_token: dict[str, float] = {}

        def report(job: AskJob, result: dict[str, Any]) -> None:
            results[job.job_id] = result
            if on_result is not None:
                on_result(job, result)

        def prepare(batch: list[AskJob]) -> list[AskRequest]:
            requests = []
            for job in batch:
                started = time.time()
                try:
                    n_question = self.pipe.count_tokens(job.question)
                    if n_question > s.max_question_tokens:
                        raise JobFailed(400, "question_too_long",
                                        f"the question is {n_question} tokens, over the limit of {s.max_question_tokens}")
                    enc, tier = self._encoding_for(job)
                except redis.RedisError:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported to this job's client only
                    report(job, failure(exc))
                    continue
                already = token_events_emitted(self.redis, job.job_id)  # > 0 when an earlier attempt died mid-stream
                append_event(self.redis, job.job_id, "start", {"worker_id": self.worker_id, "resumed_after": already})
                req = AskRequest(
                    enc, job.question, visual_token_budget=job.visual_token_budget, max_length=job.max_length,
                    max_new_tokens=job.max_new_tokens, temperature=job.temperature, top_p=job.top_p, seed=job.seed,
                    stop=job.stop, history=job.history, on_token=self._token_sink(job, already, first_token),
                )
                live[id(req)] = (job, tier, started)
                requests.append(req)
            return requests

        def done(req: AskRequest, res: Any) -> None:
            job, tier, started = live.pop(id(req))
            if isinstance(res, Exception):
                report(job, failure(res))
                return
            first = first_token.get(job.job_id)
            if first is not None:
                metrics.TTFT.observe(first - max(started, job.enqueued_at))
            metrics.TOKENS.inc(res.completion_tokens)
            report(job, self._result(job, res, tier, started, first))

        requests = prepare(jobs)
        more = (lambda n: prepare(fetch_more(n))) if fetch_more is not None else None
        if requests or more is not None:
            self.pipe.answer_many(requests, more=more, on_done=done)
        return results

    def _token_sink(self, job: AskJob, already: int, first_token: dict[str, float]) -> Callable[[int, str], None]:
        count = [0]

        def on_token(token_id: int, text: str) -> None:
            first_token.setdefault(job.job_id, time.time())
            i = count[0]
            count[0] += 1
            if i >= already:
                append_event(self.redis, job.job_id, "token", {"i": i, "token_id": token_id, "text": text})

        return on_token

    def _result(self, job: AskJob, res: Any, tier: str, started: float, first: float | None) -> dict[str, Any]:
        t = res.timings
        return {
            "ok": True, "job_id": job.job_id, "video_id": job.video_id, "text": res.text,
            "token_ids": list(res.token_ids), "finish_reason": res.finish_reason,
            "prompt_tokens": int(res.prompt_tokens), "completion_tokens": int(res.completion_tokens),
            "segments": [{"index": g.index, "start_s": g.start_s, "end_s": g.end_s, "relevance": g.relevance,
                          "tokens_kept": g.tokens_kept} for g in res.segments],
            "timings": {"queued_s": max(0.0, started - job.enqueued_at), "compress_s": t.get("compress_s", 0.0),
                        "prefill_s": t.get("prefill_s", 0.0), "decode_s": t.get("decode_s", 0.0),
                        "total_s": time.time() - job.enqueued_at,
                        "first_token_s": (first - job.enqueued_at) if first else None},
            "cache": {"hit": tier != "none", "tier": tier},
            "worker_id": self.worker_id,
        }


def failure(exc: BaseException) -> dict[str, Any]:
    f = classify(exc)
    return error_result(f.status, f.code, f.message)
