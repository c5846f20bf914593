"""``tempo ask VIDEO QUESTION``: one-shot answer with a per-segment table, like the reference's infer.py."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

TINY_NOTICE = (
    "note: no --model given, using the embedded tiny RANDOM test model: its answers are noise. "
    "Pass --model /path/to/Tempo-6B for real answers."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file (anything FFmpeg reads)")
    parser.add_argument("question")
    parser.add_argument("--model", type=Path, default=None, help="Tempo-6B checkpoint dir (default: tiny test model)")
    parser.add_argument("--svlm", type=Path, default=None, help="Qwen3-VL-2B-Instruct dir (default: resolved from config)")
    parser.add_argument("--budget", type=int, default=8192, help="visual token budget (default 8192)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=None, help="LLM context limit (default: checkpoint's)")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def _fail(message: str) -> int:
    print(f"tempo ask: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from models.errors import TempoError
    from models.video import decode_sampled_frames

    if not args.video.is_file():
        return _fail(f"{args.video}: no such file")
    if args.budget < 1 or args.max_new_tokens < 1:
        return _fail("--budget and --max-new-tokens must be positive")
    try:
        t0 = time.perf_counter()
        video = decode_sampled_frames(args.video)  # first: a bad file fails fast, before any model loads
        t1 = time.perf_counter()
        from models.tempo import TempoPipeline

        pipe = TempoPipeline.from_pretrained(args.model, args.svlm, device=args.device)
        if pipe.is_tiny_test_model:
            print(TINY_NOTICE, file=sys.stderr)
        t2 = time.perf_counter()
        result = pipe.run(
            video.frames, video.fps, args.question, visual_token_budget=args.budget,
            max_new_tokens=args.max_new_tokens, max_length=args.max_length,
            temperature=args.temperature, debug=False,
        )
    except TempoError as exc:  # VideoError, CheckpointError, InputError
        return _fail(str(exc))
    t3 = time.perf_counter()

    print(f"Answer: {result.text.strip()}")
    print()
    print(f"{'segment':>7}  {'time range (s)':>17}  {'relevance':>9}  {'tokens kept':>11}")
    for s in result.segments:
        print(f"{s.index:>7}  {s.start_s:>7.1f} - {s.end_s:>7.1f}  {s.relevance:>9.3f}  {s.tokens_kept:>11}")
    print()
    print(
        f"{video.num_frames} frames in file, {len(video.indices)} sampled at {video.fps:.2f} fps; "
        f"{len(result.segments)} segments, {int(result.allocations.sum())} visual tokens, "
        f"{result.completion_tokens} generated; decode {t1 - t0:.2f}s, model load {t2 - t1:.2f}s, answer {t3 - t2:.2f}s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="tempo ask", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
