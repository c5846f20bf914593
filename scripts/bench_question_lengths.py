"""Follow-up TTFT when every question has a new token length (production traffic), per SDPA backend set.

    python scripts/bench_question_lengths.py [--frames 1024]

Each new question length is a new attention shape; some kernels (cuDNN) build a plan per shape.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import full_size_pipeline, synthetic_frames  # noqa: E402

import models.compressor as compressor  # noqa: E402

WORDS = "when does the person in the red coat open the door and what is on the table next to the window".split()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1024)
    args = parser.parse_args()
    pipe = full_size_pipeline(decode_slots=2, decode_max_seq=17408)
    enc = pipe.encode(synthetic_frames(args.frames, 288, 512), 2.0)
    pipe.answer(enc, "warm up", max_new_tokens=1)
    backend_sets = {"efficient+math": [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
                    "with cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]}
    for offset, (name, backends) in enumerate(backend_sets.items()):
        compressor.CACHED_PASS_BACKENDS = backends
        times = []
        for n in range(3 + offset * 6, 9 + offset * 6):  # six question lengths never seen before
            question = " ".join(WORDS[:n]) + "?"
            torch.cuda.synchronize()
            t = time.perf_counter()
            pipe.answer(enc, question, max_new_tokens=1)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        print(f"{name}: new-length follow-ups (s): {' '.join(f'{x:.3f}' for x in times)}")


if __name__ == "__main__":
    main()
