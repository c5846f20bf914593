"""Health, readiness and Prometheus metrics of the gateway (no API key needed)."""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import metrics
from service.queue import keys

router = APIRouter(tags=["health"])


async def _workers(client: aioredis.Redis) -> list[dict]:
    out = []
    async for key in client.scan_iter(match=keys.HEARTBEAT_PATTERN, count=100):
        raw = await client.get(key)
        if raw:
            out.append(json.loads(raw))
    return out


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    client: aioredis.Redis = request.app.state.redis
    try:
        await client.ping()
        workers = await _workers(client)
    except Exception as exc:  # noqa: BLE001 - any Redis failure means not ready
        return JSONResponse({"status": "unavailable", "redis": False, "error": str(exc)}, status_code=503)
    ready = [w["worker_id"] for w in workers if w.get("ready")]
    body = {"status": "ok" if ready else "unavailable", "redis": True, "workers_ready": ready,
            "workers_alive": [w["worker_id"] for w in workers]}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    client: aioredis.Redis = request.app.state.redis
    try:
        now_ms = time.time() * 1000
        for stream, name in keys.QUEUE_NAMES.items():
            metrics.QUEUE_DEPTH.labels(name).set(await client.xlen(stream))
            first = await client.xrange(stream, count=1)
            age = (now_ms - int(first[0][0].split("-")[0])) / 1000 if first else 0.0
            metrics.QUEUE_OLDEST.labels(name).set(max(0.0, age))
        workers = await _workers(client)
        metrics.WORKERS_ALIVE.set(len(workers))
        metrics.WORKERS_READY.set(sum(1 for w in workers if w.get("ready")))
    except Exception:  # noqa: BLE001 - metrics must render even with Redis down
        pass
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
