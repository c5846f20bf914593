"""The FastAPI gateway: wiring of Redis, storage, routes, metrics and the one error mapping."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import metrics
from service.asking import AskService
from service.errors import TempoError
from service.queue.consumer import check_noeviction, ensure_groups
from service.queue.producer import Producer
from service.routes import ask, health, openai, videos
from service.settings import Settings, get_settings
from service.storage import Storage
from service.videos import VideoRegistry

log = logging.getLogger(__name__)


def _check_redis(url: str) -> None:
    """Start-up check with a sync client: reachable, noeviction, consumer groups exist."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        check_noeviction(client)
        ensure_groups(client)
    finally:
        client.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _check_redis(settings.redis_url)
        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        storage = Storage(settings.storage_dir)
        app.state.settings = settings
        app.state.redis = client
        app.state.storage = storage
        app.state.videos = VideoRegistry(client, storage)
        app.state.producer = Producer(client)
        app.state.asks = AskService(settings, app.state.videos, app.state.producer)
        log.info("gateway started", extra={"redis": settings.redis_url, "storage": str(settings.storage_dir),
                                           "api_keys": len(settings.api_keys)})
        yield
        await client.aclose()

    app = FastAPI(title="Tempo Serve", version="0.1.0", lifespan=lifespan,
                  description="Long-video question answering with Tempo-6B. See docs/api.md.")
    app.state.settings = settings
    for module in (health, videos, ask, openai):
        app.include_router(module.router)
    _install_error_handlers(app)
    _install_metrics_middleware(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """The one place where errors become HTTP responses (all in the OpenAI error body)."""

    @app.exception_handler(TempoError)
    async def tempo_error(request: Request, exc: TempoError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request failed", extra={"path": request.url.path, "code": exc.code, "error": exc.message})
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            msg, code = "malformed JSON body", "invalid_json"
        else:
            parts = []
            for e in errors[:5]:
                loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
                parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
            msg, code = "invalid request: " + "; ".join(parts), "invalid_request"
        param = None
        if errors and code != "invalid_json":
            param = ".".join(str(x) for x in errors[0].get("loc", ())[1:]) or None
        return JSONResponse({"error": {"message": msg, "type": "invalid_request_error", "param": param,
                                       "code": code}}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None,
                                       "code": code}}, status_code=exc.status_code)

    @app.exception_handler(redis.RedisError)
    async def redis_error(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.error("redis error", extra={"path": request.url.path, "error": str(exc)})
        return JSONResponse({"error": {"message": "the job queue is unavailable", "type": "server_error",
                                       "param": None, "code": "queue_unavailable"}}, status_code=503)


def _install_metrics_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            labels = (request.method, path, str(status))
            metrics.REQUESTS.labels(*labels).inc()
            metrics.LATENCY.labels(*labels).observe(time.perf_counter() - start)
