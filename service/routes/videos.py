"""``/v1/videos``: upload (multipart, raw body or JSON url), status, list, delete."""

from __future__ import annotations

import json
import logging

import httpx
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service import metrics
from service.auth import require_owner
from service.errors import BadRequest, Forbidden, PayloadTooLarge, TempoError, Unprocessable
from service.probe import probe_upload
from service.queue.jobs import IngestJob
from service.schemas import Deleted, Video, VideoList, VideoUrlIngest
from service.uploads import Upload, save_upload
from service.videos import VideoRecord

log = logging.getLogger(__name__)
router = APIRouter(tags=["videos"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": VideoUrlIngest.model_json_schema()},
        },
    }
}


def to_schema(rec: VideoRecord) -> Video:
    return Video(id=rec.id, status=rec.status, progress=rec.progress, size_bytes=rec.size_bytes,
                 filename=rec.filename, created_at=rec.created_at, duration_s=rec.duration_s,
                 frames_sampled=rec.frames_sampled, segments=rec.segments,
                 error={"code": rec.error.get("code", "error"), "message": rec.error.get("message", "")} if rec.error else None)


async def register_upload(request: Request, upload: Upload, owner: str) -> VideoRecord:
    app = request.app.state
    if upload.stored.created:
        try:
            await run_in_threadpool(probe_upload, upload.stored.path, app.settings.max_video_duration_s)
        except TempoError:
            app.storage.delete(upload.stored.video_id)
            metrics.UPLOADS.labels("rejected").inc()
            raise
    rec, new = await app.videos.register(upload.stored, owner, upload.filename)
    if new:
        await app.producer.enqueue(IngestJob(video_id=rec.id, path=str(upload.stored.path)))
    metrics.UPLOADS.labels("new" if new else "duplicate").inc()
    log.info("video uploaded", extra={"video_id": rec.id, "bytes": upload.stored.size, "new": new})
    return rec


async def _ingest_url(request: Request) -> Upload:
    s = request.app.state.settings
    try:
        body = VideoUrlIngest.model_validate(json.loads(await request.body()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}", code="invalid_json") from exc
    except ValueError as exc:
        raise BadRequest(f"invalid body: {exc}", code="invalid_body") from exc
    if body.url.startswith("data:"):
        from service.uploads import save_data_url

        return save_data_url(body.url, request.app.state.storage, s.max_inline_video_bytes)
    if not s.allow_url_ingest:
        raise Forbidden("URL ingest is disabled on this server (TEMPO_ALLOW_URL_INGEST); upload the file instead",
                        code="url_ingest_disabled")
    if not body.url.startswith(("http://", "https://")):
        raise BadRequest("only http(s) and data: URLs can be ingested", code="bad_url", param="url")
    writer = request.app.state.storage.open_writer(s.max_upload_bytes)
    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=60) as client:
            async with client.stream("GET", body.url) as resp:
                if resp.status_code != 200:
                    raise Unprocessable(f"fetching {body.url} gave HTTP {resp.status_code}", code="url_fetch_failed")
                async for chunk in resp.aiter_bytes():
                    writer.write(chunk)
        return Upload(writer.commit(), body.url.rsplit("/", 1)[-1] or None)
    except httpx.HTTPError as exc:
        raise Unprocessable(f"fetching {body.url} failed: {exc}", code="url_fetch_failed") from exc
    except PayloadTooLarge:
        raise
    finally:
        writer.discard()


@router.post("/v1/videos", status_code=202, response_model=Video, openapi_extra=_UPLOAD_BODY)
@router.post("/videos", status_code=202, response_model=Video, include_in_schema=False)
async def upload_video(request: Request, owner: str = Depends(require_owner)) -> JSONResponse:
    """Upload a video (multipart field ``file``, a raw ``video/*`` body, or JSON ``{"url": ...}``)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        upload = await _ingest_url(request)
    else:
        upload = await save_upload(request, request.app.state.storage, request.app.state.settings.max_upload_bytes)
    rec = await register_upload(request, upload, owner)
    return JSONResponse(to_schema(rec).model_dump(), status_code=202)


@router.get("/v1/videos/{video_id}", response_model=Video)
@router.get("/videos/{video_id}", response_model=Video, include_in_schema=False)
async def get_video(video_id: str, request: Request, owner: str = Depends(require_owner)) -> Video:
    return to_schema(await request.app.state.videos.get(video_id, owner))


@router.get("/v1/videos", response_model=VideoList)
@router.get("/videos", response_model=VideoList, include_in_schema=False)
async def list_videos(request: Request, owner: str = Depends(require_owner),
                      limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0)) -> VideoList:
    recs, total = await request.app.state.videos.list(owner, limit, offset)
    nxt = offset + limit if offset + limit < total else None
    return VideoList(data=[to_schema(r) for r in recs], total=total, limit=limit, offset=offset, next_offset=nxt)


@router.delete("/v1/videos/{video_id}", response_model=Deleted)
@router.delete("/videos/{video_id}", response_model=Deleted, include_in_schema=False)
async def delete_video(video_id: str, request: Request, owner: str = Depends(require_owner)) -> Deleted:
    await request.app.state.videos.delete(video_id, owner)
    return Deleted(id=video_id)
