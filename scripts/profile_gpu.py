"""Profile the phases of one 1024-frame question on the GPU (torch.profiler, top CUDA kernels).

    python scripts/profile_gpu.py [--frames 1024]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import QUESTIONS, full_size_pipeline, synthetic_frames  # noqa: E402


def timed(name: str, fn, rows: int = 12):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    print(f"\n=== {name}: {wall:.3f}s wall")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=60))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1024)
    args = parser.parse_args()
    pipe = full_size_pipeline(decode_slots=4, decode_max_seq=16384 + 1024)
    frames = synthetic_frames(args.frames, 288, 512)  # as the decoder hands them over (step 2 done)
    enc = pipe.encode(frames, 2.0)
    from models.preprocess import preprocess_segments

    pre = timed("preprocess (PIL threads + GPU)", lambda: preprocess_segments(frames, device="cuda"))
    timed("vision tower", lambda: pipe.compressor.encode_vision(pre.pixel_values, pre.grid_thw))
    timed("prefix KV", lambda: pipe.attach_prefix_kv(enc))
    timed("question (cached compress + prefill + 1 token)", lambda: pipe.answer(enc, QUESTIONS[1], max_new_tokens=1))


if __name__ == "__main__":
    main()
