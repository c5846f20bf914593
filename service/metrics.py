"""The gateway's Prometheus metrics (the worker has its own, in workers/metrics.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("tempo_http_requests_total", "HTTP requests by route and status",
                   ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("tempo_http_request_seconds", "HTTP request latency by route and status",
                    ["method", "route", "status"], registry=REGISTRY,
                    buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
QUEUE_DEPTH = Gauge("tempo_queue_depth", "Unfinished jobs (queued + in flight) per queue", ["queue"], registry=REGISTRY)
QUEUE_OLDEST = Gauge("tempo_queue_oldest_job_age_seconds", "Age of the oldest unfinished job per queue",
                     ["queue"], registry=REGISTRY)
WORKERS_ALIVE = Gauge("tempo_workers_alive", "Workers with a live heartbeat", registry=REGISTRY)
WORKERS_READY = Gauge("tempo_workers_ready", "Workers with a live heartbeat and models loaded", registry=REGISTRY)
TTFT = Histogram("tempo_time_to_first_token_seconds", "Time from request to first generated token",
                 ["route"], registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
TOKENS = Counter("tempo_tokens_generated_total", "Completion tokens returned to clients", ["route"], registry=REGISTRY)
ASKS = Counter("tempo_asks_total", "Answered questions by segment-cache outcome", ["cache_tier"], registry=REGISTRY)
UPLOADS = Counter("tempo_uploads_total", "Video uploads by outcome", ["outcome"], registry=REGISTRY)
