"""Write a small synthetic H.264 video (a coloured square moving over a gradient) for demos.

    python scripts/sample_video.py OUT.mp4 [--seconds 20] [--fps 10] [--size 320x240]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

COLOURS = [(220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 30)]


def render_frame(i: int, n: int, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    side = min(width, height) // 4
    cx = int((width - side) * i / max(1, n - 1))
    cy = (height - side) // 2
    frame[cy: cy + side, cx: cx + side] = COLOURS[(i * len(COLOURS)) // n]
    return frame


def write_sample_video(path: Path, seconds: float = 20.0, fps: int = 10, width: int = 320, height: int = 240) -> Path:
    n = int(seconds * fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(render_frame(i, n, width, height), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--size", default="320x240")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    write_sample_video(args.out, args.seconds, args.fps, w, h)


if __name__ == "__main__":
    main()
