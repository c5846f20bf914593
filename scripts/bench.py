"""GPU benchmark: our serving path against a baseline that does what the published Tempo code does.

    python scripts/bench.py --out bench.json [--sections model,ingest] [--frames 64,256,1024]

Both paths run in the same process on the same full-size random bf16 models (random weights cost
the same compute as real ones; generation ignores EOS so every run produces the same length):
  * baseline: CPU preprocessing (PIL + torch on one thread, as the reference), the vision tower and
    one SVLM pass over a right-padded batch of every segment, HF ``generate`` (dynamic cache), no
    reuse between questions, one request at a time;
  * ours: ``TempoPipeline`` (threaded PIL + GPU preprocessing, cached vision features and SVLM prefix
    KV, static-KV-cache decoder with CUDA graphs, batched compression and continuous batching).
Prints one table (figure, ours, baseline, ratio) and writes the same rows as JSON.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.allocation import allocate_tokens  # noqa: E402
from models.compressor import Compressor  # noqa: E402
from models.config import TempoConfig  # noqa: E402
from models.preprocess import preprocess_segments  # noqa: E402
from models.projector import Projector  # noqa: E402
from models.prompts import svlm_question_text  # noqa: E402
from models.tempo import AskRequest, TempoPipeline, load_tokenizer  # noqa: E402

log = logging.getLogger("bench")

# Published sizes of Qwen3-VL-2B-Instruct (SVLM) and Qwen3-4B (LLM).
SVLM_TEXT = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, vocab_size=151936, rope_theta=5_000_000.0,
                 max_position_embeddings=262144, initializer_range=0.02)
SVLM_VISION = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                   deepstack_visual_indexes=[5, 11, 17], initializer_range=0.02)
LLM = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
           num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
           tie_word_embeddings=True, initializer_range=0.02, tokenizer_model_max_length=16384)
K_FULL = 128
QUESTIONS = ["What is the person holding when the lights go out?", "Which colour is the car that turns left?",
             "How many people enter the room?", "What happens right after the bell rings?"]


def sync() -> None:
    torch.cuda.synchronize()


def full_size_pipeline(decode_slots: int, decode_max_seq: int) -> TempoPipeline:
    """A Tempo-6B-sized pipeline with random bf16 weights, built directly on the GPU."""
    from transformers import Qwen3VLConfig

    from models.llm import build_llm
    from models.tempo import pick_attention

    dev = torch.device("cuda")
    tiny = TempoConfig.from_dir(None)
    raw = {k: v for k, v in tiny.raw.items() if k not in ("layer_types", "max_window_layers")}
    raw.update(LLM, mm_hidden_size=SVLM_TEXT["hidden_size"], num_compression_tokens=K_FULL)
    config = TempoConfig(tiny.checkpoint_dir, tiny.svlm_dir, raw, K_FULL, SVLM_TEXT["hidden_size"],
                         LLM["hidden_size"], "mlp2x_gelu", 16384, 8192)
    svlm_cfg = Qwen3VLConfig.from_pretrained(str(tiny.svlm_dir))
    for k, v in SVLM_TEXT.items():
        setattr(svlm_cfg.text_config, k, v)
    svlm_cfg.text_config.rope_parameters = {"rope_type": "default", "rope_theta": 5_000_000.0,
                                            "mrope_section": [24, 20, 20], "mrope_interleaved": True}
    for k, v in SVLM_VISION.items():
        setattr(svlm_cfg.vision_config, k, v)
    attn = pick_attention(dev)
    for c in (svlm_cfg, svlm_cfg.text_config, svlm_cfg.vision_config):
        c._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device(dev):
        compressor = Compressor(svlm_cfg, K_FULL).to(torch.bfloat16).eval()
        compressor.memory.data.normal_(0, 0.02)
        compressor.router.normal_(0, 0.02)
        projector = Projector(SVLM_TEXT["hidden_size"], LLM["hidden_size"]).to(torch.bfloat16).eval()
        llm = build_llm(config.llm_config, torch.bfloat16, attn)
    svlm_tok = load_tokenizer(tiny.svlm_dir)
    llm_tok = load_tokenizer(tiny.checkpoint_dir)
    pipe = TempoPipeline(config, compressor, projector, llm, svlm_tok, llm_tok, dev, "bench-random",
                         decode_slots, decode_max_seq)
    pipe.stop_token_ids = ()  # fixed generated length: random weights would stop at random places
    return pipe


def synthetic_frames(n: int, h: int = 720, w: int = 1280, seed: int = 0) -> np.ndarray:
    """Decoded frames with some structure (gradients + a moving block + noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = base.copy()
        cx = (i * 37) % (w - 200)
        f[200:400, cx:cx + 200] = rng.integers(0, 255, 3)
        out[i] = f
    return out


class Timer:
    def __init__(self) -> None:
        self.t0 = 0.0
        self.first: float | None = None

    def start(self) -> None:
        sync()
        self.t0 = time.perf_counter()
        self.first = None

    def on_token(self, token_id: int, text: str) -> None:
        if self.first is None and token_id >= 0:
            self.first = time.perf_counter() - self.t0


# --- baseline: the reference's steps --------------------------------------------------------------
@torch.inference_mode()
def baseline_first_token(pipe: TempoPipeline, frames: np.ndarray, fps: float, question: str) -> tuple[float, torch.Tensor, dict]:
    """CPU preprocessing, one padded SVLM batch of all segments, HF prefill. Returns (ttft, embeds, parts)."""
    parts = {}
    sync()
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    pre = preprocess_segments(frames, device="cpu", exact=True, workers=1)
    torch.set_num_threads(os.cpu_count() or 1)
    parts["preprocess_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    vision = pipe.compressor.encode_vision(pre.pixel_values.to(pipe.device), pre.grid_thw)
    from models.prompts import svlm_prefix_text

    merge = pipe.compressor.vlm.visual.spatial_merge_size ** 2
    q = pipe.svlm_tokenizer(svlm_question_text(question), add_special_tokens=False).input_ids
    prompts = [pipe.svlm_tokenizer(svlm_prefix_text(i, c, h * w // merge, fps), add_special_tokens=False).input_ids + q
               for i, (c, (_, h, w)) in enumerate(zip(pre.frame_counts, pre.grid_thw.tolist(), strict=True))]
    out = pipe.compressor(prompts, vision, pre.grid_thw, pipe.svlm_tokens.pad, pipe.svlm_tokens.video_pad)
    sync()
    parts["svlm_s"] = time.perf_counter() - t1
    alloc = allocate_tokens(out.relevance.float().cpu().numpy(), 8192, K_FULL)
    from models.tempo import VideoEncoding

    fake = VideoEncoding(fps, len(frames), pre.frame_counts, pre.grid_thw, vision, [p[:0] for p in prompts], "x")
    embeds = pipe._llm_inputs(AskRequest(fake, question), out.features, alloc)
    t2 = time.perf_counter()
    logits = pipe.llm(inputs_embeds=embeds[None], logits_to_keep=1).logits
    int(logits[0, -1].argmax())
    parts["prefill_s"] = time.perf_counter() - t2
    return time.perf_counter() - t0, embeds, parts


@torch.inference_mode()
def baseline_decode_rate(pipe: TempoPipeline, embeds: torch.Tensor, n: int) -> float:
    """HF generate, greedy, EOS ignored: tokens/s after the first token."""
    gen_cfg = copy.deepcopy(pipe.llm.generation_config)
    gen_cfg.eos_token_id = None
    gen_cfg.pad_token_id = 0
    times = []
    for new in (1, n):
        sync()
        t = time.perf_counter()
        pipe.llm.generate(inputs_embeds=embeds[None], max_new_tokens=new, min_new_tokens=new, do_sample=False,
                          generation_config=gen_cfg)
        sync()
        times.append(time.perf_counter() - t)
    return (n - 1) / (times[1] - times[0])


# --- ours -----------------------------------------------------------------------------------------
def ours_first_and_followups(pipe: TempoPipeline, frames: np.ndarray, fps: float) -> dict:
    timer = Timer()
    timer.start()
    enc = pipe.encode(frames, fps)
    sync()
    encode_s = time.perf_counter() - timer.t0
    res = pipe.answer(enc, QUESTIONS[0], max_new_tokens=1, on_token=timer.on_token)
    first = timer.first
    parts_first = {**enc.timings, **{k: v for k, v in res.timings.items() if k != "decode_s"}}
    follow = []
    for q in QUESTIONS[1:]:
        timer.start()
        res = pipe.answer(enc, q, max_new_tokens=1, on_token=timer.on_token)
        follow.append(timer.first)
    parts_follow = {k: v for k, v in res.timings.items() if k != "decode_s"}
    kv = enc.prefix_kv
    enc.prefix_kv = None  # a follow-up on an entry holding vision features only
    timer.start()
    pipe.answer(enc, QUESTIONS[1], max_new_tokens=1, on_token=timer.on_token)
    no_kv = timer.first
    enc.prefix_kv = kv
    return {"first_ttft_s": first, "encode_s": encode_s, "parts_first": parts_first, "parts_follow": parts_follow, "followup_ttft_s": statistics.median(follow),
            "followup_no_prefix_kv_ttft_s": no_kv, "entry_vision_bytes": enc.nbytes - kv.nbytes,
            "entry_prefix_kv_bytes": kv.nbytes, "segments": enc.num_segments, "enc": enc}


def ours_decode_rate(pipe: TempoPipeline, enc, n: int) -> tuple[float, int]:
    res = pipe.answer(enc, QUESTIONS[0], max_new_tokens=n)
    res = pipe.answer(enc, QUESTIONS[0], max_new_tokens=n)  # graphs captured in the first call
    return (res.completion_tokens - 1) / res.timings["decode_s"], res.prompt_tokens


def ours_concurrent(pipe: TempoPipeline, encs: list, n_asks: int, new_tokens: int) -> dict:
    """``n_asks`` questions submitted together. Decode rate = tokens generated after the last ask's
    first token, over that time (every ask generates the same length, EOS ignored, so all of them
    decode together until they finish)."""
    firsts: list[float | None] = [None] * n_asks
    stamps: list[float] = []
    t0 = [0.0]

    def sink(i: int):
        def on_token(token_id: int, text: str) -> None:
            if token_id < 0:
                return
            now = time.perf_counter() - t0[0]
            stamps.append(now)
            if firsts[i] is None:
                firsts[i] = now
        return on_token

    reqs = [AskRequest(encs[i % len(encs)], QUESTIONS[i % len(QUESTIONS)] + f" ({i})", max_new_tokens=new_tokens,
                       on_token=sink(i)) for i in range(n_asks)]
    pipe.answer_many(reqs[:2])  # warm-up: graphs for small batches
    firsts[:] = [None] * n_asks
    stamps.clear()
    sync()
    t0[0] = time.perf_counter()
    results = pipe.answer_many(reqs)
    sync()
    wall = time.perf_counter() - t0[0]
    tokens = sum(r.completion_tokens for r in results)
    all_started = max(firsts)
    steady = [t for t in stamps if t > all_started]
    window = (max(steady) - all_started) if steady else float("nan")
    return {"wall_s": wall, "tokens": tokens, "decode_tok_s": len(steady) / window if steady else 0.0,
            "overall_tok_s": tokens / wall, "median_ttft_s": statistics.median(firsts), "max_ttft_s": all_started}


def _fmt(parts: dict) -> str:
    return ", ".join(f"{k.removesuffix('_s')} {v:.3f}" for k, v in parts.items())


def gib(x: float) -> float:
    return round(x / 2**30, 2)


def model_section(frame_counts: list[int], rows: list[dict], report: dict) -> TempoPipeline:
    torch.cuda.reset_peak_memory_stats()
    pipe = full_size_pipeline(decode_slots=8, decode_max_seq=16384 + 1024)
    pipe.sync_timings = True  # phase timings synchronise the GPU (the TTFT figures are host-clock anyway)
    sync()
    mem_models = torch.cuda.memory_allocated()
    fps = 2.0
    frames = synthetic_frames(max(frame_counts))
    report["memory"] = {"models_gib": gib(mem_models)}
    big_enc = None
    # warm-up both paths once (kernel selection, allocator, graph capture)
    ours_first_and_followups(pipe, frames[:min(frame_counts)], fps)
    baseline_first_token(pipe, frames[:min(frame_counts)], fps, QUESTIONS[0])
    for n in frame_counts:
        f = frames[:n]
        ours = ours_first_and_followups(pipe, f, fps)
        base_ttft, embeds, parts = baseline_first_token(pipe, f, fps, QUESTIONS[0])
        rows.append(dict(figure=f"first question TTFT, {n} frames (s)", ours=ours["first_ttft_s"], baseline=base_ttft,
                         note=f"baseline {_fmt(parts)}; ours {_fmt(ours['parts_first'])}"))
        rows.append(dict(figure=f"follow-up TTFT, {n} frames (s)", ours=ours["followup_ttft_s"], baseline=base_ttft,
                         note=f"baseline re-encodes every question; ours {_fmt(ours['parts_follow'])}"))
        rows.append(dict(figure=f"follow-up TTFT without prefix KV, {n} frames (s)",
                         ours=ours["followup_no_prefix_kv_ttft_s"], baseline=base_ttft, note="vision features only"))
        report.setdefault("entries", {})[n] = {"segments": ours["segments"], "vision_gib": gib(ours["entry_vision_bytes"]),
                                              "prefix_kv_gib": gib(ours["entry_prefix_kv_bytes"]),
                                              "llm_prompt_tokens": int(embeds.shape[0])}
        if n == max(frame_counts):
            big_enc, big_embeds = ours["enc"], embeds
        log.info("frames %d done", n)
    new = 129
    rate_ours, prompt = ours_decode_rate(pipe, big_enc, new)
    rate_base = baseline_decode_rate(pipe, big_embeds, new)
    rows.append(dict(figure=f"decode tokens/s, batch 1, {prompt}-token prompt", ours=rate_ours, baseline=rate_base,
                     higher_is_better=True, note="HF generate vs static cache + CUDA graphs"))
    report["memory"]["peak_single_gib"] = gib(torch.cuda.max_memory_allocated())
    decoder_bytes = sum(t.numel() * t.element_size() for t in pipe.decoder.cache.k + pipe.decoder.cache.v)
    report["memory"]["decoder_kv_gib_8x17408"] = gib(decoder_bytes)
    del big_enc
    pipe._decoder = None
    torch.cuda.empty_cache()

    # --- concurrency: 256-frame videos, slots sized for their prompts ---------------------------------
    pipe.decode_slots, pipe.decode_max_seq = 32, 4608
    encs = [pipe.encode(synthetic_frames(256, seed=s), fps) for s in range(4)]
    sync()
    conc32 = ours_concurrent(pipe, encs, 32, 128)
    rows.append(dict(figure="decode tokens/s total, 32 concurrent asks", ours=conc32["decode_tok_s"], baseline=rate_base,
                     higher_is_better=True,
                     note=f"baseline serves one ask at a time; ours overall incl. compress+prefill {conc32['overall_tok_s']:.0f} tok/s, "
                          f"median TTFT {conc32['median_ttft_s']:.2f}s"))
    pipe._decoder = None  # 16 slots sized for 256-frame prompts: room for 16 videos' prefix KV caches
    torch.cuda.empty_cache()
    pipe.decode_slots, pipe.decode_max_seq = 16, 2304
    encs += [pipe.encode(synthetic_frames(256, seed=s), fps) for s in range(4, 16)]
    sync()
    conc16 = ours_concurrent(pipe, encs, 16, 32)
    rows.append(dict(figure="median TTFT, 16 concurrent asks on 16 cached 256-frame videos (s)",
                     ours=conc16["median_ttft_s"], baseline=None, note=f"max {conc16['max_ttft_s']:.3f}s"))
    report["memory"]["peak_gib"] = gib(torch.cuda.max_memory_allocated())
    free, total = torch.cuda.mem_get_info()
    report["memory"]["device_total_gib"] = gib(total)
    e = report["entries"][max(frame_counts)]
    budget = total * 0.92 - mem_models - decoder_bytes - 6 * 2**30  # 6 GiB working set for a 1024-frame question
    report["memory"]["hour_long_entries_fit_vision_only"] = int(budget // (e["vision_gib"] * 2**30))
    report["memory"]["hour_long_entries_fit_with_prefix_kv"] = int(budget // ((e["vision_gib"] + e["prefix_kv_gib"]) * 2**30))
    del encs
    torch.cuda.empty_cache()
    return pipe


# --- ingest ---------------------------------------------------------------------------------------
def make_long_video(path: Path, minutes: float, clip_s: int = 10, fps: int = 30, gop_s: int = 5) -> None:
    """1080p H.264: encode a ``clip_s`` clip once, then repeat its packets (remux, no re-encoding)."""
    import av

    clip = path.with_suffix(".clip.mp4")
    with av.open(str(clip), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 1920, 1080, "yuv420p"
        st.options = {"preset": "ultrafast", "g": str(gop_s * fps), "sc_threshold": "0", "bf": "2"}
        frames = synthetic_frames(clip_s * fps, 1080, 1920)
        for f in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    repeats = int(minutes * 60 / clip_s)
    with av.open(str(clip)) as src, av.open(str(path), "w") as dst:
        ins = src.streams.video[0]
        outs = dst.add_stream_from_template(ins)
        packets = [(bytes(p), p.pts, p.dts, p.duration, p.is_keyframe) for p in src.demux(ins) if p.size]
        span = int(round(clip_s / ins.time_base))  # the clip's length in stream time units
        for r in range(repeats):
            for data, pts, dts, duration, key in packets:
                q = av.Packet(data)
                q.stream, q.time_base = outs, ins.time_base
                q.pts, q.dts, q.duration, q.is_keyframe = pts + r * span, dts + r * span, duration, key
                dst.mux(q)
    clip.unlink()


def full_decode_fps(path: Path) -> tuple[float, int]:
    import av

    t = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return time.perf_counter() - t, n


def ingest_section(rows: list[dict], report: dict, minutes: float, pipe: TempoPipeline | None = None) -> None:
    from models.video import decode_sampled_frames

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "long.mp4"
        t = time.perf_counter()
        make_long_video(path, minutes)
        report["ingest_video"] = {"minutes": minutes, "bytes": path.stat().st_size, "make_s": time.perf_counter() - t}
        floor_s, n = full_decode_fps(path)
        report["ingest_video"]["frames"] = n
        t = time.perf_counter()
        exact = decode_sampled_frames(path)
        exact_s = time.perf_counter() - t
        t = time.perf_counter()
        fast = decode_sampled_frames(path, mode="fast")
        fast_s = time.perf_counter() - t
        rows.append(dict(figure=f"ingest decode, {minutes:.0f} min 1080p, frame-exact (s)", ours=exact_s, baseline=floor_s,
                         note=f"baseline = decode every frame ({n / floor_s:.0f} fps, threaded): the floor; "
                              f"{exact.decoded_frames} frames decoded, {exact.seeks} seeks"))
        rows.append(dict(figure=f"ingest decode, {minutes:.0f} min 1080p, fast mode (s)", ours=fast_s, baseline=exact_s,
                         note=f"baseline = our frame-exact; {fast.decoded_frames} keyframes decoded"))
        report["ingest_video"].update(exact_frames=len(exact.indices), fast_frames=len(fast.indices))
        if pipe is not None:  # the whole ingest job: decode, then preprocess + vision + prefix KV
            sync()
            t = time.perf_counter()
            video = decode_sampled_frames(path)
            pipe.encode(video.frames, video.fps)
            sync()
            rows.append(dict(figure=f"ingest, {minutes:.0f} min 1080p, frame-exact decode + encode (s)",
                             ours=time.perf_counter() - t, baseline=floor_s,
                             note="baseline = decode every frame: the floor"))


def print_table(rows: list[dict]) -> None:
    print(f"\n{'figure':<78} {'ours':>10} {'baseline':>10} {'ratio':>8}")
    for r in rows:
        o, b = r["ours"], r["baseline"]
        if b is None or o is None:
            ratio = None
        else:
            ratio = (o / b) if r.get("higher_is_better") else (b / o)
        r["speedup"] = ratio
        fmt = lambda v: "-" if v is None else f"{v:10.3f}"  # noqa: E731
        print(f"{r['figure']:<78} {fmt(o)} {fmt(b)} {('-' if ratio is None else f'{ratio:7.1f}x'):>8}")
        if r.get("note"):
            print(f"    {r['note']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--sections", default="model,ingest")
    parser.add_argument("--frames", default="64,256,1024")
    parser.add_argument("--ingest-minutes", type=float, default=60.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    if not torch.cuda.is_available():
        sys.exit("bench: needs a CUDA GPU (run it on the device machine)")
    rows: list[dict] = []
    report: dict = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "command": " ".join(sys.argv),
    }
    sections = args.sections.split(",")
    pipe = None
    try:
        if "model" in sections:
            pipe = model_section([int(x) for x in args.frames.split(",")], rows, report)
        if "ingest" in sections:
            ingest_section(rows, report, args.ingest_minutes, pipe)
    finally:
        print_table(rows)
        report["rows"] = rows
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1, default=str))


if __name__ == "__main__":
    main()
