"""Frame-exact video sampling with PyAV (reference behaviour step 1, with step 2 applied per frame).

Sampling rule (``sample_indices``): ``N`` frames, average rate ``f`` (2.0 when unknown or <= 0),
``duration = N / f``, ``n = min(max(max(1, round(2 * duration)), 4), 1024)``; the indices are
``round(linspace(0, N - 1, n))`` (half to even), ``real_fps = len(indices) / duration``.

Decoding strategy (``decode_sampled_frames``):

* A frame's *index* is its position in presentation order. Decoders emit frames in presentation
  order, so B-frames (decode order != presentation order) need no special handling when counting
  decoder output; when seeking we identify frames by their pts instead (see below).
* ``N`` is the stream's frame count from the container header (``stream.frames``; mp4/mov write
  it). When the header has none (matroska/webm, mpeg-ts, raw streams) we count the video packets
  by demuxing without decoding: one packet is one frame for the codecs we serve. ``f`` is the
  stream's ``average_rate`` (for mp4/mov FFmpeg derives it as frames / stream duration, so it is
  the true average for variable frame rate too); when absent it is ``N / stream duration``, and
  when that is unknown the rule's default 2.0 applies.
* Dense sampling (short videos, mean gap between sampled frames < ``SEEK_MIN_GAP`` frames):
  decode sequentially, count frames, keep only the sampled ones, stop right after the last
  sampled index.
* Sparse sampling (long videos): one demux pass (no decoding, packets are not kept) builds the
  presentation-order pts table (sorted packet pts) and the keyframe positions. For each sampled
  index we seek to the keyframe before it only when that skips at least ``SEEK_MIN_SKIP`` frames
  past the current decode position, otherwise we keep decoding. After a seek, frames are ignored
  until the decoder delivers a keyframe (mpeg-ts and similar land *near* the target); if that
  keyframe is after the wanted frame we seek again 1, 2, 4, 8 keyframes earlier. Every decoded
  frame is identified by its pts through the table, so counting stays exact. The pts are treated
  as unreliable -- and we fall back to sequential decoding from the start -- when packets lack
  pts or share one, their count differs from ``N``, they never reorder although the codec does
  (decode-order stamps, e.g. AVI with B-frames), a decoded pts is not in the table, consecutive
  decoded frames are not consecutive indices, or seeking keeps landing after the target.
* Each kept frame is converted to RGB uint8, rotated as displayed (the display-matrix rotation
  PyAV exposes as ``frame.rotation``; flips are not applied), resized with
  ``models.preprocess.resize_to_max_edge`` and written into a preallocated output array, so no
  full-resolution frame is held beyond the one being converted. The file is read by FFmpeg as a
  stream, never loaded into memory.
* If the stream ends a few frames before the header's count (tolerance ``max(2, 1% of N)``, e.g.
  edit lists or a sloppy header), the missing tail indices reuse the last decoded frame (logged);
  a larger shortfall is a ``CorruptVideoError`` (truncated file).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np
from PIL import Image

from models.errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    VideoTooLargeError,
    VideoTooLongError,
)
from models.preprocess import MAX_FRAME_EDGE, resize_to_max_edge

logger = logging.getLogger(__name__)

MAX_SAMPLED_FRAMES = 1024
MIN_SAMPLED_FRAMES = 4
SAMPLE_FPS = 2.0
DEFAULT_FPS = 2.0
# Fast mode: threads decoding keyframes, each with its own demuxer.
FAST_DECODE_THREADS = 8
# Use the pts table + keyframe seeks when the mean gap between sampled frames is at least this.
SEEK_MIN_GAP = 48
# Seek only when it skips at least this many frames that sequential decoding would have decoded.
SEEK_MIN_SKIP = 24
# How many times to seek further back (1, 2, 4, 8 keyframes) when a seek lands after the wanted frame.
SEEK_RETRIES = 4

ProgressFn = Callable[[float], None]


@dataclass
class VideoInfo:
    num_frames: int  # N, frames in the video stream (header count, or counted packets)
    avg_fps: float | None  # average frame rate; None when unknown (the rule then uses 2.0)
    duration_s: float  # N / f
    width: int  # display width (after rotation)
    height: int  # display height (after rotation)
    rotation: int  # counter-clockwise degrees applied for display (0, 90, 180, -90)
    codec: str


@dataclass
class SampledVideo:
    frames: np.ndarray  # uint8 [T, H, W, 3], resized with resize_to_max_edge
    fps: float  # real_fps of the sampling rule
    indices: np.ndarray  # int64 [T] frame indices in the file (presentation order)
    num_frames: int  # N
    duration_s: float  # N / f
    width: int  # display size of the source after rotation
    height: int
    decoded_frames: int = 0  # frames the decoder produced (diagnostics)
    seeks: int = 0  # keyframe seeks performed (diagnostics)


def _effective_fps(avg_fps: float | None) -> float:
    if avg_fps is None:
        return DEFAULT_FPS
    f = float(avg_fps)
    if not math.isfinite(f) or f <= 0:
        return DEFAULT_FPS
    return f


def sample_indices(num_frames: int, avg_fps: float | None) -> tuple[np.ndarray, float]:
    """Step 1: the frame indices to sample and the effective rate ``real_fps`` used for timestamps."""
    n_frames = int(num_frames)
    f = _effective_fps(avg_fps)
    duration = n_frames / f
    target = max(1, round(duration * SAMPLE_FPS))
    n = min(max(target, MIN_SAMPLED_FRAMES), MAX_SAMPLED_FRAMES)
    if n_frames <= 1:
        indices = np.zeros(1, dtype=np.int64)
    elif n == 1:
        indices = np.array([n_frames - 1], dtype=np.int64)
    else:
        indices = np.round(np.linspace(0, n_frames - 1, n)).astype(np.int64)
        indices = np.clip(indices, 0, n_frames - 1)
    real_fps = len(indices) / duration if duration > 0 else f
    return indices, float(real_fps)


# --------------------------------------------------------------------------------------------
# Opening and probing


_CONTAINER_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (4, b"skip"),
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"),
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # mpeg-ps
    (0, b"\x00\x00\x01\xb3"),  # mpeg video
    (0, b"\x00\x00\x00\x01"),  # annex-b
    (0, b"\x30\x26\xb2\x75"),  # asf / wmv
)


def _looks_like_media(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    for offset, magic in _CONTAINER_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return True
    # MPEG-TS: sync byte every 188 bytes.
    return len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47


def _reason(exc: BaseException) -> str:
    """A short, one-line reason from an FFmpeg error (no paths, no tracebacks)."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        text = str(exc.strerror)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


@contextmanager
def _open_input(path: Path) -> Iterator[av.container.InputContainer]:
    if path.stat().st_size == 0:
        raise NotAVideoError("the file is empty, not a video")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        if _looks_like_media(path):
            raise CorruptVideoError(
                f"the video file is damaged or truncated and cannot be opened ({_reason(exc)})"
            ) from exc
        raise NotAVideoError(f"the file is not a recognised video format ({_reason(exc)})") from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if videos:
        return videos[0]
    if container.streams.video:  # only cover art: not a video
        raise NoVideoStreamError("the file has no video stream (only a still cover image)")
    if container.streams.audio:
        raise NoVideoStreamError("the file has no video stream (it contains audio only)")
    raise NotAVideoError("the file is not a video: it has no audio or video streams")


@dataclass
class _PtsTable:
    count: int  # video packets (= frames) in the stream
    pts_sorted: np.ndarray  # int64 [M] packet pts in presentation order
    keyframes: list[int]  # presentation indices of keyframes, ascending
    reliable: bool


@dataclass
class _Probe:
    num_frames: int
    avg_fps: float | None
    duration_s: float
    coded_width: int
    coded_height: int
    codec: str
    table: _PtsTable | None


def _stream_duration_s(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    if stream.duration and stream.time_base and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _scan_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> _PtsTable:
    """Demux (no decoding) the whole video stream: pts of every frame and where the keyframes are."""
    pts: list[int | None] = []
    keys: list[bool] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at EOF
                continue
            pts.append(packet.pts)
            keys.append(bool(packet.is_keyframe))
    except av.error.FFmpegError as exc:
        raise CorruptVideoError(f"the video file is damaged and cannot be read ({_reason(exc)})") from exc
    if not pts or any(p is None for p in pts):
        return _PtsTable(len(pts), np.zeros(0, dtype=np.int64), [], reliable=False)
    arr = np.asarray(pts, dtype=np.int64)
    order = np.argsort(arr, kind="stable")
    sorted_pts = arr[order]
    reliable = bool(np.all(np.diff(sorted_pts) > 0))
    if reliable and stream.codec_context.has_b_frames and np.all(np.diff(arr) > 0):
        # The decoder reorders frames but the packet stamps never do: they are decode-order
        # stamps (e.g. AVI), not presentation timestamps.
        reliable = False
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    keyframes = sorted(int(rank[i]) for i, k in enumerate(keys) if k)
    if not keyframes or keyframes[0] != 0:
        keyframes = [0, *keyframes]
    return _PtsTable(len(pts), sorted_pts, keyframes, reliable)


def _probe_open(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    max_duration_s: float | None,
) -> _Probe:
    codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
    stated_duration = _stream_duration_s(container, stream)
    if max_duration_s is not None and stated_duration is not None and stated_duration > max_duration_s * 1.01:
        # Reject before any counting pass over a huge file.
        raise VideoTooLongError(
            f"the video is {stated_duration:.1f} s long, over the limit of {max_duration_s:.1f} s"
        )
    table: _PtsTable | None = None
    num_frames = int(stream.frames or 0)
    if num_frames <= 0:
        logger.debug("%s: no frame count in the header, counting packets", path.name)
        table = _scan_packets(container, stream)
        num_frames = table.count
        if num_frames == 0:
            raise CorruptVideoError("the video stream contains no frames")
    avg_fps: float | None = None
    if stream.average_rate is not None and stream.average_rate > 0:
        avg_fps = float(stream.average_rate)
    elif stated_duration:
        avg_fps = num_frames / stated_duration
    duration_s = num_frames / _effective_fps(avg_fps)
    width = int(stream.codec_context.width or 0)
    height = int(stream.codec_context.height or 0)
    return _Probe(num_frames, avg_fps, duration_s, width, height, codec, table)


def _display_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    return (height, width) if _quarter_turns(rotation) % 2 else (width, height)


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns (0..3); angles that are not multiples of 90 are rounded."""
    return int(round(rotation / 90.0)) % 4


def _normalise_rotation(rotation: float) -> int:
    """0, 90, 180 or -90 (counter-clockwise degrees)."""
    return (0, 90, 180, -90)[_quarter_turns(rotation)]


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, average rate, display size, rotation and codec (decodes at most one frame)."""
    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(container)
        probe = _probe_open(path, container, stream, None)
        rotation = 0
        try:
            container.seek(0)
        except av.error.FFmpegError:
            pass
        try:
            for frame in container.decode(stream):
                rotation = _normalise_rotation(frame.rotation)
                probe.coded_width, probe.coded_height = frame.width, frame.height
                break
        except av.error.FFmpegError as exc:
            raise CorruptVideoError(
                f"the video is damaged or truncated and cannot be decoded ({_reason(exc)})"
            ) from exc
    width, height = _display_size(probe.coded_width, probe.coded_height, rotation)
    return VideoInfo(
        num_frames=probe.num_frames,
        avg_fps=probe.avg_fps,
        duration_s=probe.duration_s,
        width=width,
        height=height,
        rotation=rotation,
        codec=probe.codec,
    )


# --------------------------------------------------------------------------------------------
# Decoding


class _Unreliable(Exception):
    """pts cannot be trusted for frame-exact seeking; decode sequentially instead."""


class _Sink:
    """Receives decoded frames at sampled indices and writes them into the output array.

    Conversion (YUV -> RGB, rotation, the step-2 PIL resize) runs on a small thread pool while the
    decoder goes on (both release the GIL), with at most ``_IN_FLIGHT`` frames waiting, so
    converting 1024 full-HD frames overlaps decoding instead of adding to it.
    """

    _IN_FLIGHT = 32

    def __init__(self, indices: np.ndarray, max_edge: int, progress: ProgressFn | None) -> None:
        self.indices = indices
        self.positions: dict[int, list[int]] = {}
        for pos, idx in enumerate(indices.tolist()):
            self.positions.setdefault(int(idx), []).append(pos)
        self.needed = sorted(self.positions)
        self.max_edge = max_edge
        self.progress = progress
        self.out: np.ndarray | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._IN_FLIGHT)
        self._pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="frames")
        self._futures: list[Future] = []
        self.reset()

    def wait(self) -> None:
        """Block until every frame handed over is stored; re-raises a conversion error."""
        futures, self._futures = self._futures, []
        for f in futures:
            f.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def reset(self) -> None:
        self.wait()
        self.filled: set[int] = set()
        self.decoded = 0
        self.last_index = -1
        self.last_frame: av.VideoFrame | None = None
        self.rotation = 0
        self.coded_size: tuple[int, int] | None = None

    def seen(self, index: int, frame: av.VideoFrame) -> None:
        with self._lock:  # fast mode calls this from several decoding threads
            self.decoded += 1
            if index > self.last_index:
                self.last_index = index
                self.last_frame = frame

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        self.rotation = _normalise_rotation(frame.rotation)
        if self.coded_size is None:
            self.coded_size = (frame.width, frame.height)
        turns = _quarter_turns(self.rotation)
        if turns:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=turns))
        return resize_to_max_edge(rgb, self.max_edge)

    def put(self, index: int, frame: av.VideoFrame, also: list[int] | None = None) -> None:
        """Convert ``frame`` in the background and store it at sampled index ``index`` (and ``also``)."""
        self._slots.acquire()
        self._futures.append(self._pool.submit(self._convert_store, [index, *(also or [])], frame))

    def _convert_store(self, indices: list[int], frame: av.VideoFrame) -> None:
        try:
            image = self.convert(frame)
            for index in indices:
                self.store(index, image)
        finally:
            self._slots.release()

    def store(self, index: int, image: np.ndarray) -> None:
        with self._lock:
            self._store(index, image)

    def _store(self, index: int, image: np.ndarray) -> None:
        if self.out is None:
            self.out = np.empty((len(self.indices), *image.shape), dtype=np.uint8)
        elif image.shape != self.out.shape[1:]:
            logger.warning(
                "frame %d has size %s, expected %s; resizing", index, image.shape, self.out.shape[1:]
            )
            h, w = self.out.shape[1:3]
            image = np.asarray(Image.fromarray(image).resize((w, h), resample=Image.BICUBIC))
        for pos in self.positions[index]:
            self.out[pos] = image
        self.filled.add(index)
        if self.progress is not None:
            self.progress(len(self.filled) / len(self.needed))


def _configure(stream: av.video.stream.VideoStream) -> None:
    stream.thread_type = "AUTO"


def _decode_sequential(path: Path, stream_index: int, sink: _Sink) -> None:
    """Count decoder output (presentation order) and keep the sampled frames; stop after the last."""
    wanted = sink.positions
    last_needed = sink.needed[-1]
    with _open_input(path) as container:
        stream = container.streams[stream_index]
        _configure(stream)
        index = 0
        for frame in container.decode(stream):
            sink.seen(index, frame)
            if index in wanted:
                sink.put(index, frame)
            index += 1
            if index > last_needed:
                break


def _decode_seeking(path: Path, stream_index: int, table: _PtsTable, sink: _Sink) -> int:
    """Seek to keyframes across large gaps; identify frames by pts. Returns the number of seeks.

    After a seek, frames are ignored until the decoder delivers a keyframe (some demuxers, e.g.
    mpeg-ts, land near rather than on the requested keyframe). If that first keyframe is after the
    wanted frame, or the stream ends first, we seek again 1, 2, 4, ... keyframes earlier.
    """
    pts_to_index = {int(p): i for i, p in enumerate(table.pts_sorted.tolist())}
    keyframes = table.keyframes
    needed = sink.needed
    seeks = 0
    with _open_input(path) as container:
        stream = container.streams[stream_index]
        _configure(stream)
        pos = 0
        cur = 0  # index of the next frame the decoder would deliver if we keep going
        retries = 0
        key_slot = 0
        must_seek = False
        while pos < len(needed):
            target = needed[pos]
            slot = bisect.bisect_right(keyframes, target) - 1
            seeking = must_seek or keyframes[slot] - cur >= SEEK_MIN_SKIP
            if seeking:
                if not must_seek:
                    retries = 0
                    key_slot = slot
                container.seek(int(table.pts_sorted[keyframes[key_slot]]), stream=stream, backward=True)
                seeks += 1
            must_seek = False
            landed = not seeking
            prev = cur - 1
            stop = False  # True when we leave the decode loop on purpose (not at end of stream)
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise _Unreliable("decoded frame without pts")
                index = pts_to_index.get(int(frame.pts))
                if index is None:
                    raise _Unreliable(f"decoded pts {frame.pts} not in the packet table")
                if not landed:
                    if not frame.key_frame:
                        continue  # not decodable from here, or a leading frame before the keyframe
                    landed = True
                    if index > target:
                        must_seek = stop = True  # landed after the frame we need
                        break
                elif index != prev + 1:
                    # Presentation order is consecutive; anything else means the pts are not
                    # presentation timestamps (e.g. decode-order stamps in AVI with B-frames).
                    raise _Unreliable(f"frame pts out of sequence (frame {index} after {prev})")
                prev = index
                sink.seen(index, frame)
                if index > needed[pos]:
                    raise _Unreliable(f"frame {needed[pos]} was skipped (got {index})")
                if index == needed[pos]:
                    sink.put(index, frame)
                    pos += 1
                cur = index + 1
                if pos == len(needed):
                    stop = True
                    break
                next_slot = bisect.bisect_right(keyframes, needed[pos]) - 1
                if keyframes[next_slot] - cur >= SEEK_MIN_SKIP:
                    stop = True
                    break  # the outer loop seeks (which flushes the decoder)
            if seeking and not landed:
                must_seek = True  # the stream ended before a usable keyframe
            if must_seek:
                if retries >= SEEK_RETRIES or key_slot <= 0:
                    raise _Unreliable(f"seeking for frame {target} did not land before it")
                key_slot = max(0, key_slot - 2**retries)
                retries += 1
                continue
            if not stop:
                break  # end of stream
    return seeks


def _decode_exact(path: Path, stream_index: int, num_frames: int, sparse: bool, table: _PtsTable | None,
                  sink: _Sink) -> int:
    """Frame-exact decoding: keyframe seeks across large gaps when the pts table allows, else sequential."""
    use_seek = (
        sparse
        and table is not None
        and table.reliable
        and len(table.pts_sorted) == num_frames
        and len(table.keyframes) > 1
    )
    if sparse and not use_seek:
        logger.info("%s: pts table unusable for seeking, decoding sequentially", path.name)
    if use_seek:
        assert table is not None
        try:
            return _decode_seeking(path, stream_index, table, sink)
        except _Unreliable as exc:
            logger.warning("%s: %s; falling back to sequential decoding", path.name, exc)
            sink.reset()  # waits for frames already handed over
    _decode_sequential(path, stream_index, sink)
    return 0


def _decode_nearest_keyframes(path: Path, stream_index: int, table: _PtsTable, sink: _Sink) -> int:
    """Fast mode: every sampled index takes its nearest keyframe; only keyframes are decoded.

    Returns the number of seeks. Each keyframe is decoded once however many indices map to it.
    """
    keys = np.asarray(table.keyframes, dtype=np.int64)
    needed = np.asarray(sink.needed, dtype=np.int64)
    right = np.clip(np.searchsorted(keys, needed), 0, len(keys) - 1)
    left = np.clip(right - 1, 0, len(keys) - 1)
    nearest = np.where(np.abs(keys[left] - needed) <= np.abs(keys[right] - needed), keys[left], keys[right])
    targets: dict[int, list[int]] = {}
    for idx, key in zip(needed.tolist(), nearest.tolist(), strict=True):
        targets.setdefault(key, []).append(idx)
    pts_to_index = {int(p): i for i, p in enumerate(table.pts_sorted.tolist())}
    keys_in_order = sorted(targets)

    def run(part: list[int]) -> int:
        """Decode one contiguous share of the keyframes with its own demuxer and decoder.

        Each keyframe is decoded from its packet alone, then the decoder is drained, so it hands the
        picture over at once instead of waiting for the (skipped) frames that follow it.
        """
        seeks = 0
        with _open_input(path) as container:
            stream = container.streams[stream_index]
            stream.thread_type = "SLICE"  # frame threads would only add latency to single pictures
            codec = stream.codec_context
            for key in part:
                target = int(table.pts_sorted[key])
                container.seek(target, stream=stream, backward=True)  # also flushes the decoder
                seeks += 1
                for packet in container.demux(stream):
                    if packet.size == 0 or packet.pts is None or packet.pts < target or not packet.is_keyframe:
                        continue  # the demuxer landed before the keyframe we want
                    frames = [*codec.decode(packet), *codec.decode(None)]  # decode, then drain
                    if not frames:
                        raise _Unreliable(f"keyframe at pts {packet.pts} decoded to nothing")
                    frame = frames[0]
                    index = pts_to_index.get(int(frame.pts)) if frame.pts is not None else None
                    sink.seen(key if index is None else index, frame)
                    sink.put(targets[key][0], frame, also=targets[key][1:])
                    break
        return seeks

    # Keyframes decode independently: split them over threads (PyAV releases the GIL while decoding).
    n = max(1, min(FAST_DECODE_THREADS, os.cpu_count() or 1, len(keys_in_order) // 8))
    parts = [keys_in_order[i * len(keys_in_order) // n: (i + 1) * len(keys_in_order) // n] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="keyframes") as pool:
        return sum(pool.map(run, parts))


def decode_sampled_frames(
    path: str | Path,
    *,
    max_duration_s: float | None = None,
    max_bytes: int | None = None,
    max_edge: int = MAX_FRAME_EDGE,
    progress: ProgressFn | None = None,
    mode: str = "exact",
) -> SampledVideo:
    """Decode exactly the frames chosen by ``sample_indices`` (RGB uint8, rotated, resized).

    ``mode="fast"`` trades exactness for speed: each sampled index takes the *nearest keyframe*
    instead, and only keyframes are decoded (the decoder skips every other frame). Indices, fps and
    timestamps stay those of the exact rule; the pixels come from up to half a GOP away. Streams
    whose timestamps cannot be trusted, or that have a single keyframe, fall back to exact decoding.

    Raises a ``models.errors.VideoError`` subclass for unusable inputs.
    """
    if mode not in ("exact", "fast"):
        raise ValueError(f"mode must be 'exact' or 'fast', not {mode!r}")
    path = Path(path)
    size = os.stat(path).st_size
    if max_bytes is not None and size > max_bytes:
        raise VideoTooLargeError(f"the video file is {size} bytes, over the limit of {max_bytes} bytes")

    with _open_input(path) as container:
        stream = _video_stream(container)
        stream_index = stream.index
        probe = _probe_open(path, container, stream, max_duration_s)
        if max_duration_s is not None and probe.duration_s > max_duration_s:
            raise VideoTooLongError(
                f"the video is {probe.duration_s:.1f} s long, over the limit of {max_duration_s:.1f} s"
            )
        indices, real_fps = sample_indices(probe.num_frames, probe.avg_fps)
        sink = _Sink(indices, max_edge, progress)
        table = probe.table
        sparse = probe.num_frames / len(sink.needed) >= SEEK_MIN_GAP
        if (sparse or mode == "fast") and table is None:
            table = _scan_packets(container, stream)

    fast = mode == "fast" and table is not None and table.reliable and len(table.keyframes) > 1 \
        and len(table.pts_sorted) == probe.num_frames
    if mode == "fast" and not fast:
        logger.info("%s: keyframe table unusable, fast mode decodes exactly", path.name)
    try:
        if fast:
            assert table is not None
            try:
                seeks = _decode_nearest_keyframes(path, stream_index, table, sink)
            except _Unreliable as exc:
                logger.warning("%s: %s; fast mode falls back to exact decoding", path.name, exc)
                sink.reset()
                seeks = _decode_exact(path, stream_index, probe.num_frames, sparse, table, sink)
        else:
            seeks = _decode_exact(path, stream_index, probe.num_frames, sparse, table, sink)
        sink.wait()
    except av.error.FFmpegError as exc:
        raise CorruptVideoError(
            f"the video is damaged or truncated and cannot be decoded ({_reason(exc)})"
        ) from exc
    finally:
        sink.close()

    missing = [i for i in sink.needed if i not in sink.filled]
    if missing:
        _fill_shortfall(path, probe.num_frames, sink, missing)
    assert sink.out is not None and sink.coded_size is not None
    width, height = _display_size(*sink.coded_size, sink.rotation)
    if progress is not None:
        progress(1.0)
    return SampledVideo(
        frames=sink.out,
        fps=real_fps,
        indices=indices,
        num_frames=probe.num_frames,
        duration_s=probe.duration_s,
        width=width,
        height=height,
        decoded_frames=sink.decoded,
        seeks=seeks,
    )


def _fill_shortfall(path: Path, num_frames: int, sink: _Sink, missing: list[int]) -> None:
    got = sink.last_index + 1
    tolerance = max(2, math.ceil(0.01 * num_frames))
    if sink.last_frame is None:
        raise CorruptVideoError("the video is damaged: no frame could be decoded")
    if num_frames - got > tolerance or missing[0] < sink.last_index:
        raise CorruptVideoError(
            f"the video is damaged or truncated: it ends after {got} of {num_frames} frames"
        )
    logger.warning(
        "%s: stream ended after %d of %d frames; reusing the last frame for indices %s",
        path.name,
        got,
        num_frames,
        missing,
    )
    image = sink.convert(sink.last_frame)
    for index in missing:
        sink.store(index, image)
