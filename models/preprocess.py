"""Frame preprocessing exactly as the published Tempo-6B does it (reference behaviour steps 2-4).

Step 2 (``resize_to_max_edge``) runs once per decoded frame, so the decoder applies it as frames
arrive and never holds full-resolution frames. Steps 3-4 cut the sampled frames into 8-frame
segments and turn each into Qwen3-VL ``pixel_values_videos`` rows.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MAX_FRAME_EDGE = 512
SEGMENT_FRAMES = 8


def resize_to_max_edge(frame: np.ndarray, max_edge: int = MAX_FRAME_EDGE) -> np.ndarray:
    """Step 2: shrink an RGB uint8 frame [H, W, 3] whose longest edge exceeds ``max_edge``.

    Each side becomes ``int(round(side * max_edge / longest / 16) * 16)`` (at least 16), PIL bicubic.
    Frames already small enough are returned unchanged (same object).
    """
    h, w = frame.shape[:2]
    new_h, new_w = max_edge_size(h, w, max_edge)
    if (new_h, new_w) == (h, w):
        return frame
    image = Image.fromarray(frame).resize((new_w, new_h), resample=Image.BICUBIC)
    return np.asarray(image)


def max_edge_size(h: int, w: int, max_edge: int = MAX_FRAME_EDGE) -> tuple[int, int]:
    """The (height, width) step 2 gives a frame: unchanged unless its longest edge exceeds ``max_edge``."""
    longest = max(h, w)
    if longest <= max_edge:
        return h, w
    return (max(16, int(round(h * max_edge / longest / 16) * 16)),
            max(16, int(round(w * max_edge / longest / 16) * 16)))


def smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's size rule: round each side to ``factor`` and keep the area in [min, max] pixels."""
    h_bar = max(factor, round(h / factor) * factor)
    w_bar = max(factor, round(w / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        h_bar = math.floor(h / beta / factor) * factor
        w_bar = math.floor(w / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        h_bar = math.ceil(h * beta / factor) * factor
        w_bar = math.ceil(w * beta / factor) * factor
    return h_bar, w_bar


# --- steps 3-4: segments and Qwen3-VL pixel rows --------------------------------------------------

PATCH_SIZE = 16
TEMPORAL_PATCH = 2
MERGE_SIZE = 2
_FRAME_FACTOR = 64  # the reference passes 32 as "patch size" and multiplies by merge 2 again
_CLIP_FACTOR = 32
_CLIP_MIN_PIXELS = 128 * 32 * 32
_CLIP_TOTAL_PIXELS = 128000 * 32 * 32 * 0.9


@dataclass(frozen=True)
class PreprocessedSegments:
    """Pixel input of the SVLM for every segment of one video.

    ``pixel_values`` rows are grouped by segment in order; segment ``i`` owns
    ``grid_thw[i].prod()`` rows. ``frame_counts`` are the per-segment frame counts after the
    even-count padding (the padded frame takes the next global index for timestamps).
    """

    pixel_values: torch.Tensor  # [sum_i t_i*h_i*w_i, 3*2*16*16] float32
    grid_thw: torch.Tensor  # [S, 3] int64: (frames/2, H/16, W/16)
    frame_counts: list[int]  # [S] frames per segment after padding to even


def segment_bounds(num_frames: int) -> list[tuple[int, int]]:
    """Step 3: windows of 8 frames, stride 8; the last may be shorter."""
    return [(s, min(s + SEGMENT_FRAMES, num_frames)) for s in range(0, num_frames, SEGMENT_FRAMES)]


def _clip_size(h: int, w: int, nframes: int) -> tuple[int, int]:
    max_pixels = max(min(768 * 32 * 32, _CLIP_TOTAL_PIXELS / nframes * 2), int(_CLIP_MIN_PIXELS * 1.05))
    return smart_resize(h, w, _CLIP_FACTOR, _CLIP_MIN_PIXELS, max_pixels)


def _pil_frames(frames: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Steps 2 and 4.1 with PIL bicubic, frame by frame on a thread pool (PIL releases the GIL).

    frames: uint8 [T, H, W, 3] -> uint8 [T, H', W', 3], bit-exact with the reference.
    """
    h, w = resize_to_max_edge(frames[0]).shape[:2]
    new_h, new_w = smart_resize(h, w, _FRAME_FACTOR, 4 * 64 * 64, 16384 * 64 * 64)
    out = np.empty((frames.shape[0], new_h, new_w, 3), dtype=np.uint8)

    def one(i: int) -> None:
        frame = resize_to_max_edge(frames[i])
        out[i] = frame if (new_h, new_w) == (h, w) else np.asarray(
            Image.fromarray(frame).resize((new_w, new_h), resample=Image.BICUBIC))

    workers = workers or min(16, os.cpu_count() or 1)
    if frames.shape[0] < 16 or workers == 1:
        for i in range(frames.shape[0]):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(frames.shape[0])))
    return out


def _patchify(clip: torch.Tensor) -> torch.Tensor:
    """Qwen3-VL patch rows of one clip. clip: float [T(even), 3, H, W] -> [T/2*H/16*W/16, 1536]."""
    t, c, h, w = clip.shape
    gt, gh, gw = t // TEMPORAL_PATCH, h // PATCH_SIZE, w // PATCH_SIZE
    x = clip.reshape(gt, TEMPORAL_PATCH, c, gh // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE, gw // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # gt, gh/m, gw/m, m, m, c, tp, p, p
    return x.reshape(gt * gh * gw, c * TEMPORAL_PATCH * PATCH_SIZE * PATCH_SIZE)


def _torch_resize_uint8(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic antialiased resize of float [T, 3, H, W] uint8-valued frames, rounded like PIL's output.

    PyTorch's antialiased bicubic uses PIL's kernel (a = -0.5); the result differs from PIL's
    fixed-point arithmetic by at most a level or so, well inside bf16 tolerance.
    """
    if tuple(video.shape[-2:]) == size:
        return video
    out = F.interpolate(video, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0, 255).round()


def _gpu_frames(frames: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Steps 2 and 4.1 on the accelerator: float [T, 3, H', W'] (uint8 values)."""
    h2, w2 = max_edge_size(*frames.shape[1:3])
    h3, w3 = smart_resize(h2, w2, _FRAME_FACTOR, 4 * 64 * 64, 16384 * 64 * 64)
    host = torch.from_numpy(frames)
    out = torch.empty((frames.shape[0], 3, h3, w3), device=device)
    step = 64  # frames per copy + resize: bounds the float copy of full-size frames
    for i in range(0, frames.shape[0], step):
        chunk = host[i: i + step].to(device).permute(0, 3, 1, 2).float()
        out[i: i + step] = _torch_resize_uint8(_torch_resize_uint8(chunk, (h2, w2)), (h3, w3))
    return out


def preprocess_segments(
    frames: np.ndarray, device: torch.device | str = "cpu", exact: bool | None = True, workers: int | None = None
) -> PreprocessedSegments:
    """Steps 2-4 for all sampled frames of a video. frames: uint8 [T, H, W, 3].

    Every frame of a video has the same size, so steps 4.1 and 4.3 (both per-frame spatial resizes)
    run once over all frames; the even-count padding of step 4.2 repeats an already resized frame,
    which gives the same pixels as repeating it before resizing.

    ``exact`` runs steps 2 and 4.1 with PIL on CPU threads, bit-exact with the reference; the rest
    runs on ``device``. ``exact=False`` runs every step with PyTorch on ``device`` (within a level or
    two of PIL when shrinking, more when enlarging tiny frames). ``exact=None`` picks: PyTorch when
    ``device`` is a GPU and both resizes shrink (the common case: a 512x288 frame becomes 512x256),
    PIL otherwise. ``workers`` threads run the PIL steps (default: up to 16).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    if exact is None:
        h2, w2 = max_edge_size(*frames.shape[1:3])
        h3, w3 = smart_resize(h2, w2, _FRAME_FACTOR, 4 * 64 * 64, 16384 * 64 * 64)
        exact = torch.device(device).type != "cuda" or h3 > h2 or w3 > w2
    if exact:
        video = torch.from_numpy(_pil_frames(frames, workers)).to(device).permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    else:
        video = _gpu_frames(frames, device)
    bounds = segment_bounds(video.shape[0])
    h, w = video.shape[-2:]
    rows, grids, counts = [], [], []
    for start, end in bounds:
        clip = video[start:end]
        if clip.shape[0] == 1:  # step 3: a single-frame window is repeated once
            clip = clip.repeat(2, 1, 1, 1)
        if clip.shape[0] % 2:  # step 4.2
            clip = torch.cat([clip, clip[-1:]], dim=0)
        new_h, new_w = _clip_size(h, w, clip.shape[0])  # step 4.3
        clip = F.interpolate(clip, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        clip = clip.clamp(0, 255).round().to(torch.uint8).float()
        clip = (clip - 127.5) / 127.5  # step 4.4: rescale 1/255 then normalise mean 0.5 std 0.5, fused
        rows.append(_patchify(clip))
        grids.append((clip.shape[0] // TEMPORAL_PATCH, new_h // PATCH_SIZE, new_w // PATCH_SIZE))
        counts.append(clip.shape[0])
    return PreprocessedSegments(
        pixel_values=torch.cat(rows, dim=0),
        grid_thw=torch.tensor(grids, dtype=torch.long),
        frame_counts=counts,
    )
