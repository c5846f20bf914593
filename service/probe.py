"""A cheap check, at upload, that the bytes are a decodable video (PyAV; the gateway never loads torch).

It opens the container, finds a video stream and decodes its first frame, so a text file, an audio
file or a truncated header is refused with a 4xx before any job is queued. The worker's full decode
(models.video) stays the authority; a file that fails there is marked ``failed`` with the reason.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.error

from service.errors import PayloadTooLarge, Unprocessable, UnsupportedMedia


def probe_upload(path: Path, max_duration_s: float) -> None:
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise UnsupportedMedia(f"the file is not a recognised video format ({_reason(exc)})", code="not_a_video") from exc
    try:
        if not container.streams.video:
            raise UnsupportedMedia("the file has no video stream", code="no_video_stream")
        stream = container.streams.video[0]
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        if duration is not None and duration > max_duration_s:
            raise PayloadTooLarge(f"the video is {duration:.1f} s long, over the limit of {max_duration_s:.1f} s",
                                  code="video_too_long")
        try:
            next(container.decode(stream))
        except StopIteration as exc:
            raise Unprocessable("the video stream has no decodable frame", code="corrupt_video") from exc
        except av.error.FFmpegError as exc:
            raise Unprocessable(f"the video cannot be decoded ({_reason(exc)})", code="corrupt_video") from exc
    finally:
        container.close()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:200]
