"""Synthetic test videos written with PyAV; every frame carries its own index in its pixels.

A frame is a 4x3 grid of solid cells (robust to compression and to resizing): cell 0 is always
white and cell 1 always black (so a wrong rotation is detected), cells 2..11 hold the 10 bits of
the frame index, least significant first.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID_COLS, GRID_ROWS = 4, 3
LOW, HIGH = 24, 232
INDEX_BITS = GRID_COLS * GRID_ROWS - 2


def index_frame(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """RGB uint8 [H, W, 3] picture encoding ``index`` (0..1023)."""
    assert 0 <= index < 2**INDEX_BITS
    cells = [1, 0] + [(index >> bit) & 1 for bit in range(INDEX_BITS)]
    image = np.empty((height, width, 3), dtype=np.uint8)
    for cell, on in enumerate(cells):
        r, c = divmod(cell, GRID_COLS)
        y0, y1 = r * height // GRID_ROWS, (r + 1) * height // GRID_ROWS
        x0, x1 = c * width // GRID_COLS, (c + 1) * width // GRID_COLS
        image[y0:y1, x0:x1] = HIGH if on else LOW
    return image


def read_index(image: np.ndarray) -> int:
    """Inverse of ``index_frame`` for a decoded (lossy, possibly resized) frame; -1 if markers fail."""
    height, width = image.shape[:2]
    gray = image.astype(np.float32).mean(axis=2)
    bits = []
    for cell in range(GRID_COLS * GRID_ROWS):
        r, c = divmod(cell, GRID_COLS)
        y0, y1 = r * height // GRID_ROWS, (r + 1) * height // GRID_ROWS
        x0, x1 = c * width // GRID_COLS, (c + 1) * width // GRID_COLS
        my, mx = (y1 - y0) // 4, (x1 - x0) // 4  # cell centre, away from edges
        bits.append(int(gray[y0 + my : y1 - my, x0 + mx : x1 - mx].mean() > 128))
    if bits[0] != 1 or bits[1] != 0:
        return -1
    return sum(bit << i for i, bit in enumerate(bits[2:]))


def write_video(
    path: Path,
    num_frames: int,
    *,
    fps: int = 30,
    width: int = 64,
    height: int = 48,
    options: dict[str, str] | None = None,
    rotation: int | None = None,
    pts: Sequence[int] | None = None,
    container_format: str | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """H.264 (libx264, B-frames by default) with ``index_frame`` pictures.

    ``pts`` (in units of 1/fps) gives explicit, possibly irregular timestamps (variable frame rate).
    ``rotation`` writes a display matrix (counter-clockwise degrees, as ``VideoFrame.rotation``).
    """
    container = av.open(str(path), mode="w", format=container_format, options=container_options or {})
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    # veryfast keeps B-frames (ultrafast would drop them); one encoder thread keeps CI load low.
    stream.options = {"preset": "veryfast", "bf": "2", "g": "12", "threads": "1", **(options or {})}
    if rotation is not None:
        stream.set_display_rotation(rotation)
    for i in range(num_frames):
        frame = av.VideoFrame.from_ndarray(index_frame(i, width, height), format="rgb24")
        frame.pts = i if pts is None else int(pts[i])
        frame.time_base = Fraction(1, fps)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_audio_only(path: Path, seconds: float = 0.5) -> Path:
    container = av.open(str(path), mode="w")
    stream = container.add_stream("aac", rate=16000)
    samples = int(16000 * seconds)
    t = np.arange(samples, dtype=np.float32) / 16000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    for start in range(0, samples, 1024):
        chunk = tone[:, start : start + 1024]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        frame.sample_rate = 16000
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path
