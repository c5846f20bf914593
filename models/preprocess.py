"""Frame preprocessing exactly as the published Tempo-6B does it (reference behaviour steps 2-4).

Step 2 (``resize_to_max_edge``) runs once per decoded frame, so the decoder applies it as frames
arrive and never holds full-resolution frames. Steps 3-4 cut the sampled frames into 8-frame
segments and turn each into Qwen3-VL ``pixel_values_videos`` rows.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

MAX_FRAME_EDGE = 512
SEGMENT_FRAMES = 8


def resize_to_max_edge(frame: np.ndarray, max_edge: int = MAX_FRAME_EDGE) -> np.ndarray:
    """Step 2: shrink an RGB uint8 frame [H, W, 3] whose longest edge exceeds ``max_edge``.

    Each side becomes ``int(round(side * max_edge / longest / 16) * 16)`` (at least 16), PIL bicubic.
    Frames already small enough are returned unchanged (same object).
    """
    h, w = frame.shape[:2]
    longest = max(h, w)
    if longest <= max_edge:
        return frame
    new_h = max(16, int(round(h * max_edge / longest / 16) * 16))
    new_w = max(16, int(round(w * max_edge / longest / 16) * 16))
    image = Image.fromarray(frame).resize((new_w, new_h), resample=Image.BICUBIC)
    return np.asarray(image)


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
