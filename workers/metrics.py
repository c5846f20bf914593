"""The worker's Prometheus metrics, served with /healthz and /readyz by workers/http.py."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

QUEUE_DEPTH = Gauge("tempo_queue_depth", "Unfinished jobs (queued + in flight) per queue", ["queue"], registry=REGISTRY)
QUEUE_OLDEST = Gauge("tempo_queue_oldest_job_age_seconds", "Age of the oldest unfinished job per queue",
                     ["queue"], registry=REGISTRY)
HEARTBEATS = Counter("tempo_worker_heartbeats_total", "Heartbeats written", registry=REGISTRY)
READY = Gauge("tempo_worker_ready", "1 once the models are loaded", registry=REGISTRY)
JOBS = Counter("tempo_jobs_total", "Jobs finished by queue and outcome", ["queue", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram("tempo_job_seconds", "Job run time by queue", ["queue"], registry=REGISTRY,
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900))
BATCH_SIZE = Histogram("tempo_batch_size", "Jobs per batch read from a queue", ["queue"], registry=REGISTRY,
                       buckets=(1, 2, 4, 8, 16, 32))
RECLAIMED = Counter("tempo_jobs_reclaimed_total", "Jobs reclaimed from workers whose heartbeat expired", registry=REGISTRY)
DEAD = Counter("tempo_jobs_dead_lettered_total", "Jobs sent to the dead-letter stream", registry=REGISTRY)
CACHE_HITS = Counter("tempo_segment_cache_hits_total", "Segment cache hits by tier", ["tier"], registry=REGISTRY)
CACHE_MISSES = Counter("tempo_segment_cache_misses_total", "Segment cache misses (video re-encoded)", registry=REGISTRY)
CACHE_BYTES = Gauge("tempo_segment_cache_bytes", "Bytes held per segment cache tier", ["tier"], registry=REGISTRY)
CACHE_EVICTIONS = Counter("tempo_segment_cache_evictions_total", "Entries evicted per tier", ["tier"], registry=REGISTRY)
VIDEOS_DECODED = Counter("tempo_videos_decoded_total", "Video files decoded (ingest or cache miss)", registry=REGISTRY)
INGEST_SECONDS = Histogram("tempo_ingest_seconds", "Ingest duration (decode + encode)", registry=REGISTRY,
                           buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600))
TTFT = Histogram("tempo_worker_time_to_first_token_seconds", "From job start on the worker to the first token",
                 registry=REGISTRY, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
TOKENS = Counter("tempo_tokens_generated_total", "Tokens generated", registry=REGISTRY)
