"""TempoPipeline: the whole Tempo-6B computation behind two calls.

    encode(frames, fps) -> VideoEncoding         question-independent; cacheable per video
    answer(encoding, question, ...) -> AskResult  per question: compress, allocate, project, generate
    run(frames, fps, question, ...)               both, plus the debug arrays the parity tests read

The steps and their numbers follow docs/tempo-reference-behaviour (see the step numbers in comments).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import PreTrainedTokenizerBase, Qwen3VLConfig

from models.allocation import allocate_tokens
from models.checkpoint import CheckpointReader, checkpoint_revision
from models.compressor import Compressor, PrefixKV, VisionFeatures
from models.config import TempoConfig
from models.decoder import FastDecoder
from models.detokenize import StreamingText
from models.errors import InputError, TempoError
from models.generation import BatchGenerator, SamplingParams, Sequence
from models.llm import build_llm, load_llm_weights
from models.preprocess import preprocess_segments
from models.projector import Projector
from models.prompts import (
    SVLMTokens,
    llm_prompt_texts,
    segment_timestamp_text,
    svlm_prefix_text,
    svlm_question_text,
)
from models.records import AskRequest, AskResult, SegmentGrounding, VideoEncoding

log = logging.getLogger(__name__)

# The pipeline's API, records included (they live in records.py).
__all__ = ["AskRequest", "AskResult", "SegmentGrounding", "TempoPipeline", "VideoEncoding"]

# Tokens per compressor forward pass: bounds activation memory on long videos; rows are independent.
COMPRESS_CHUNK_TOKENS = 32768
# How often a running batch asks for more requests to join it (answer_many's ``more``).
JOIN_POLL_S = 0.05
# The reference's reserve for text tokens when it truncates the visual sequence (step 10).
TRUNCATION_RESERVE = 16


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer class the directory names (avoids AutoConfig on ``tempo_qwen``)."""
    cfg = json.loads((directory / "tokenizer_config.json").read_text())
    cls = getattr(transformers, cfg.get("tokenizer_class", "AutoTokenizer"), transformers.AutoTokenizer)
    return cls.from_pretrained(str(directory))


def pick_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TempoError(f"device {device!r} was asked for, but PyTorch sees no CUDA GPU here")
    if dev.type == "cuda" and dev.index is None:  # "cuda" and "cuda:0" must compare equal to tensors' devices
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def pick_attention(device: torch.device) -> str:
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


class TempoPipeline:
    def __init__(
        self,
        config: TempoConfig,
        compressor: Compressor,
        projector: Projector,
        llm: transformers.Qwen3ForCausalLM,
        svlm_tokenizer: PreTrainedTokenizerBase,
        llm_tokenizer: PreTrainedTokenizerBase,
        device: torch.device,
        model_revision: str,
        decode_slots: int = 8,
        decode_max_seq: int | None = None,
        compile_kernels: bool | None = None,
    ) -> None:
        self.config = config
        self.compressor = compressor
        self.projector = projector
        self.llm = llm
        self.svlm_tokenizer = svlm_tokenizer
        self.llm_tokenizer = llm_tokenizer
        self.device = device
        self.model_revision = model_revision
        self.svlm_tokens = SVLMTokens.from_tokenizer(svlm_tokenizer)
        self.decode_slots = decode_slots
        self.decode_max_seq = decode_max_seq or config.tokenizer_model_max_length + 1024
        self._decoder: FastDecoder | None = None
        self.compile_kernels = compile_kernels  # the LLM decoder's; the compressor stays eager (compressor.py)
        # Resize steps: True = PIL (bit-exact with the reference), False = PyTorch on the device,
        # None = PIL on the CPU and when enlarging, PyTorch on a GPU when shrinking (see preprocess.py).
        self.exact_preprocessing: bool | None = None
        # Synchronise the device at phase boundaries so timings are true (benchmarks; costs a little).
        self.sync_timings = False
        self.stop_token_ids = tuple(
            {i for i in (llm_tokenizer.eos_token_id, llm_tokenizer.convert_tokens_to_ids("<|im_end|>")) if i is not None}
        )

    # --- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        checkpoint_dir: str | Path | None = None,
        svlm_dir: str | Path | None = None,
        device: str | torch.device | None = "auto",
        dtype: torch.dtype | str | None = None,
        decode_slots: int = 8,
        decode_max_seq: int | None = None,
        compile_kernels: bool | None = None,
    ) -> TempoPipeline:
        """Load a Tempo-6B checkpoint (default: the embedded tiny random test model) onto ``device``.

        ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU. ``decode_slots`` sequences decode
        together; each may hold ``decode_max_seq`` tokens (prompt + answer; default: the checkpoint's
        context limit + 1024). Their KV cache is allocated on first use. ``compile_kernels`` (default:
        on CUDA) fuses the elementwise parts of the LLM's decoder with ``torch.compile`` on first use.
        """
        config = TempoConfig.from_dir(checkpoint_dir, svlm_dir)
        dev = pick_device(device)
        if isinstance(dtype, str):
            dtype = None if dtype == "auto" else getattr(torch, dtype)
        dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
        attn = pick_attention(dev)
        t0 = time.perf_counter()
        tempo, base = CheckpointReader(config.checkpoint_dir), CheckpointReader(config.svlm_dir)
        svlm_tok = load_tokenizer(config.svlm_dir)
        llm_tok = load_tokenizer(config.checkpoint_dir)
        tokens = SVLMTokens.from_tokenizer(svlm_tok)

        svlm_config = Qwen3VLConfig.from_pretrained(str(config.svlm_dir))
        svlm_config._attn_implementation = attn
        svlm_config.vision_config._attn_implementation = attn
        svlm_config.text_config._attn_implementation = attn
        with torch.device(dev):
            compressor = Compressor(svlm_config, config.num_compression_tokens).to(dtype)
            projector = Projector(config.mm_hidden_size, config.hidden_size).to(dtype)
            llm = build_llm(config.llm_config, dtype, attn)
        compressor.load_checkpoint(tempo, base, tokens.yes, tokens.no)
        projector.load_checkpoint(tempo)
        load_llm_weights(llm, tempo)
        compressor.eval()
        projector.eval()
        revision = checkpoint_revision(config.checkpoint_dir, config.svlm_dir)
        log.info("loaded Tempo", extra={"checkpoint": str(config.checkpoint_dir), "device": str(dev),
                                         "dtype": str(dtype), "attn": attn, "revision": revision,
                                         "load_s": round(time.perf_counter() - t0, 2)})
        return cls(config, compressor, projector, llm, svlm_tok, llm_tok, dev, revision, decode_slots, decode_max_seq,
                   compile_kernels)

    @torch.inference_mode()
    def warm_up(self) -> float:
        """Run one small question end to end so start-up, not the first user, pays for compiling
        kernels, capturing the first decode graphs and cuDNN/cuBLAS plan selection. Returns seconds."""
        t0 = time.perf_counter()
        frames = np.full((16, 288, 512, 3), 127, dtype=np.uint8)
        enc = self.encode(frames, 2.0)
        for question in ("Is anything happening?", "What happens in the video, and when?"):
            self.answer(enc, question, max_new_tokens=4)
        return time.perf_counter() - t0

    @property
    def is_tiny_test_model(self) -> bool:
        from models.config import TINY_CHECKPOINT

        return self.config.checkpoint_dir.resolve() == TINY_CHECKPOINT.resolve()

    def count_tokens(self, text: str) -> int:
        return len(self.llm_tokenizer(text, add_special_tokens=False).input_ids)

    # --- question-independent work ------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, frames: np.ndarray, fps: float, prefix_kv: bool | None = None) -> VideoEncoding:
        """Steps 2-4 and the vision tower: everything about a video that no question changes.

        With ``prefix_kv`` (default: on CUDA) the SVLM also runs each segment's system+video prefix
        once and keeps its KV cache, so a question runs only its own tokens and the memory tokens.
        """
        if frames.ndim != 4 or frames.shape[0] == 0:
            raise InputError(f"expected frames [T, H, W, 3] with T >= 1, got shape {tuple(frames.shape)}")
        if not fps > 0:
            raise InputError(f"fps must be positive, got {fps}")
        laps = _Laps(self.device if self.sync_timings else None)
        pre = preprocess_segments(frames, device=self.device, exact=self.exact_preprocessing)
        laps.lap("preprocess_s")
        vision = self.compressor.encode_vision(pre.pixel_values, pre.grid_thw)
        laps.lap("vision_s")
        merge = self.compressor.vlm.visual.spatial_merge_size**2
        prefix_ids = []
        for i, (count, (_, h, w)) in enumerate(zip(pre.frame_counts, pre.grid_thw.tolist(), strict=True)):
            text = svlm_prefix_text(i, count, h * w // merge, fps)
            prefix_ids.append(self.svlm_tokenizer(text, add_special_tokens=False).input_ids)
        enc = VideoEncoding(fps, int(frames.shape[0]), pre.frame_counts, pre.grid_thw, vision, prefix_ids, self.model_revision)
        if prefix_kv if prefix_kv is not None else self.device.type == "cuda":
            self.attach_prefix_kv(enc)
            laps.lap("prefix_kv_s")
        enc.timings = laps.times
        return enc

    def prefix_kv_nbytes(self, enc: VideoEncoding) -> int:
        """What ``attach_prefix_kv`` would add to the encoding, without computing it."""
        stack = self.compressor.stack
        width = max(len(p) for p in enc.prefix_ids)
        element = torch.empty(0, dtype=stack.dtype).element_size()
        return 2 * len(stack.layers) * enc.num_segments * stack.n_kv * width * stack.head_dim * element

    @torch.inference_mode()
    def attach_prefix_kv(self, enc: VideoEncoding) -> None:
        """Compute the SVLM prefix KV cache of an encoding (on this pipeline's device), in row chunks."""
        if enc.device != self.device:
            enc.vision = enc.to(self.device, keep_prefix_kv=False).vision
        slices = enc.vision.segment_slices()
        lengths = [len(p) for p in enc.prefix_ids]
        stack = self.compressor.stack
        out = PrefixKV.allocate(len(stack.layers), lengths, stack.n_kv, stack.head_dim, stack.dtype, self.device)
        for rows in _row_chunks(lengths):
            vision = VisionFeatures(
                enc.vision.embeds[slices[rows.start].start: slices[rows.stop - 1].stop],
                enc.vision.deepstack[:, slices[rows.start].start: slices[rows.stop - 1].stop],
                enc.vision.tokens_per_segment[rows],
            )
            self.compressor.encode_prefix(enc.prefix_ids[rows], vision, enc.grid_thw[rows], self.svlm_tokens.pad,
                                          self.svlm_tokens.video_pad, out=out, rows=rows)
        enc.prefix_kv = out

    # --- per-question work ----------------------------------------------------------------------------
    @property
    def decoder(self) -> FastDecoder:
        if self._decoder is None:
            self._decoder = FastDecoder(self.llm, self.decode_slots, self.decode_max_seq,
                                        compile_kernels=self.compile_kernels)
        return self._decoder

    def answer(self, encoding: VideoEncoding, question: str, **options) -> AskResult:
        """Answer one question (options as in ``AskRequest``). Raises ``TempoError`` on bad input."""
        result = self.answer_many([AskRequest(encoding, question, **options)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def run(self, frames: np.ndarray, fps: float, query: str, **options) -> AskResult:
        """Reference-equivalent single call: encode then answer, with every inspection array."""
        options.setdefault("debug", True)
        return self.answer(self.encode(frames, fps), query, **options)

    @torch.inference_mode()
    def answer_many(
        self,
        requests: list[AskRequest],
        more: Callable[[int], list[AskRequest]] | None = None,
        on_done: Callable[[AskRequest, AskResult | InputError], None] | None = None,
    ) -> list[AskResult | InputError]:
        """Answer several questions together: packed compressor passes, then continuous batched decoding.

        Requests are compressed in waves of about ``COMPRESS_CHUNK_TOKENS`` new SVLM tokens; a wave's
        sequences start decoding (and streaming) while the next wave is compressed, between decode
        steps, so the first answers do not wait for every question's compression.
        ``more(n)``, when given, is asked between decode steps (at most every ``JOIN_POLL_S``) for up
        to ``n`` further requests while decode slots are free: they join the running batch.
        ``on_done(request, result)`` is called as each request finishes. Returns every request's
        result (joined ones after the initial ones); a bad request gets its ``InputError``.
        """
        initial, requests = list(requests), []  # requests grows as more() adds to the batch
        results: list[AskResult | InputError | None] = []
        waves: list[list[int]] = []
        prepared: dict[int, tuple] = {}  # request index -> (embeds, allocations, relevance, features, timings)
        pending: list[int] = []
        gen = BatchGenerator(self.decoder)
        running: dict[int, tuple[Sequence, StreamingText]] = {}
        by_sequence: dict[int, int] = {}  # id(sequence) -> request index

        def finish(i: int, result: AskResult | InputError) -> None:
            results[i] = result
            if on_done is not None:
                on_done(requests[i], result)

        def accept(new: list[AskRequest]) -> None:
            start = len(requests)
            requests.extend(new)
            results.extend([None] * len(new))
            valid = []
            for i in range(start, len(requests)):
                try:
                    self._validate(requests[i])
                    valid.append(i)
                except InputError as exc:
                    finish(i, exc)
            k = self.compressor.num_memory_tokens
            waves.extend([valid[j] for j in range(c.start, c.stop)]
                         for c in _row_chunks([requests[i].encoding.num_segments * (k + 32) for i in valid]))

        accept(initial)
        last_poll = time.monotonic()
        while True:
            if more is not None and not waves and not pending and gen.free_slots > 0 \
                    and (not gen.active or time.monotonic() - last_poll >= JOIN_POLL_S):
                last_poll = time.monotonic()
                accept(more(gen.free_slots))
            if not (waves or pending or gen.active):
                break
            if waves and not pending and gen.free_slots > 0:
                wave = waves.pop(0)
                self._prepare_wave([requests[i] for i in wave], wave, prepared, results)
                for i in wave:
                    if i in prepared:
                        pending.append(i)
                    else:  # its LLM inputs were refused
                        finish(i, results[i])
            while pending and gen.free_slots > 0:  # admit as many as fit, between decode steps
                i = pending.pop(0)
                req = requests[i]
                detok = StreamingText(self.llm_tokenizer, req.stop or [], req.on_token)
                params = SamplingParams(req.max_new_tokens, req.temperature, req.top_p, req.seed, self.stop_token_ids)
                seq = gen.add(prepared[i][0], params, on_token=detok.push, keep_logits=req.debug)
                running[i], by_sequence[id(seq)] = (seq, detok), i
                if seq.done:  # finished at its first token
                    finish(i, self._result(requests[i], prepared.pop(i), seq, detok))
            for seq in gen.step():
                i = by_sequence.pop(id(seq))
                finish(i, self._result(requests[i], prepared.pop(i), seq, running[i][1]))
        return results  # type: ignore[return-value]

    def _result(self, req: AskRequest, prep: tuple, seq: Sequence, detok: StreamingText) -> AskResult:
        embeds, alloc, relevance, features, timings = prep
        text = detok.final_text(seq.token_ids)
        rel = relevance.cpu().numpy().astype(np.float32)
        segments = [
            SegmentGrounding(j, round(a, 3), round(b, 3), float(rel[j]), int(alloc[j]))
            for j, (a, b) in enumerate(req.encoding.segment_times())
        ]
        return AskResult(
            text=text,
            token_ids=seq.token_ids,
            finish_reason="stop" if detok.stopped else (seq.finish_reason or "length"),
            prompt_tokens=int(embeds.shape[0]),
            segments=segments,
            timings={**timings, "prefill_s": seq.prefill_s, "decode_s": seq.decode_s},
            relevance=rel,
            allocations=alloc,
            compression_features=features.float().cpu().numpy() if req.debug else None,
            llm_inputs_embeds=embeds.float().cpu().numpy() if req.debug else None,
            step_logits=torch.stack(seq.step_logits).numpy() if req.debug and seq.step_logits else None,
        )

    def _prepare_wave(self, reqs: list[AskRequest], indices: list[int], prepared: dict[int, tuple],
                      results: list) -> None:
        """Steps 5-10 for a wave of requests: compress, allocate, project, build the LLM inputs."""
        laps = _Laps(self.device if self.sync_timings else None)
        compressed = self._compress_many(reqs)
        compress_s = laps.lap("compress_s")
        for i, req, (features, relevance) in zip(indices, reqs, compressed, strict=True):
            # Step 8: adaptive token allocation.
            alloc = allocate_tokens(relevance.cpu().numpy(), req.visual_token_budget, self.compressor.num_memory_tokens)
            try:
                embeds = self._llm_inputs(req, features, alloc)  # steps 9-10
            except InputError as exc:
                results[i] = exc
                continue
            prepared[i] = (embeds, alloc, relevance, features, {"compress_s": compress_s})
        inputs_s = laps.lap("llm_inputs_s")
        for i in indices:
            if i in prepared:
                prepared[i][4]["llm_inputs_s"] = inputs_s

    def _validate(self, req: AskRequest) -> None:
        if not req.question.strip():
            raise InputError("the question is empty")
        if req.visual_token_budget < 1:
            raise InputError("visual_token_budget must be at least 1")
        if req.max_new_tokens < 1:
            raise InputError("max_new_tokens must be at least 1")
        if req.max_new_tokens > self.decode_max_seq // 2:
            raise InputError(f"max_new_tokens {req.max_new_tokens} is over this server's limit of {self.decode_max_seq // 2}")
        if req.encoding.model_revision != self.model_revision:
            raise InputError("the video encoding was made by another model revision")

    # --- internals --------------------------------------------------------------------------------
    def _compress_many(self, requests: list[AskRequest]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Steps 5-7 for every segment of every request. Returns per request (features [S, K, D_s], relevance [S]).

        Segments of videos with a prefix KV cache run only [question | memory] against it, grouped by
        question length so rows need no padding; the others run their whole prompt. Either way rows
        of different requests share forward passes of up to ``COMPRESS_CHUNK_TOKENS`` tokens.
        """
        encs = [r.encoding if r.encoding.device == self.device else r.encoding.to(self.device) for r in requests]
        q_ids = [self.svlm_tokenizer(svlm_question_text(r.question), add_special_tokens=False).input_ids for r in requests]
        feats: list[list[torch.Tensor | None]] = [[None] * e.num_segments for e in encs]
        rels: list[list[torch.Tensor | None]] = [[None] * e.num_segments for e in encs]
        k = self.compressor.num_memory_tokens

        def store(items: list[tuple[int, int]], out) -> None:
            for j, (r, s) in enumerate(items):
                feats[r][s], rels[r][s] = out.features[j], out.relevance[j]

        groups: dict[int, list[tuple[int, int]]] = {}  # question length -> cached rows
        full: list[tuple[int, int]] = []
        for r, enc in enumerate(encs):
            target = groups.setdefault(len(q_ids[r]), []) if enc.prefix_kv is not None else full
            target += [(r, s) for s in range(enc.num_segments)]

        for q_len, items in groups.items():
            # a row costs its new tokens plus a copy of its prefix KV (keys are [prefix | new] per layer)
            for rows in _row_chunks([q_len + k + encs[r].prefix_kv.mask.shape[1] for r, _ in items]):
                chunk = items[rows]
                prefix = PrefixKV.cat([encs[r].prefix_kv.rows(run) for r, run in _runs(chunk)])
                store(chunk, self.compressor.forward_cached(prefix, [q_ids[r] for r, _ in chunk]))

        for rows in _row_chunks([len(encs[r].prefix_ids[s]) + len(q_ids[r]) + k for r, s in full]):
            chunk = full[rows]
            runs = _runs(chunk)
            slices = {r: encs[r].vision.segment_slices() for r, _ in runs}
            cols = [slice(slices[r][run.start].start, slices[r][run.stop - 1].stop) for r, run in runs]
            vision = VisionFeatures(
                torch.cat([encs[r].vision.embeds[c] for (r, _), c in zip(runs, cols, strict=True)]),
                torch.cat([encs[r].vision.deepstack[:, c] for (r, _), c in zip(runs, cols, strict=True)], dim=1),
                [encs[r].vision.tokens_per_segment[s] for r, s in chunk],
            )
            out = self.compressor(
                [encs[r].prefix_ids[s] + q_ids[r] for r, s in chunk], vision,
                torch.stack([encs[r].grid_thw[s] for r, s in chunk]),
                pad_id=self.svlm_tokens.pad, video_pad_id=self.svlm_tokens.video_pad,
            )
            store(chunk, out)
        return [(torch.stack(f), torch.stack(r)) for f, r in zip(feats, rels, strict=True)]

    def _llm_inputs(self, req: AskRequest, features: torch.Tensor, alloc: np.ndarray) -> torch.Tensor:
        """[L, D_l] input embeddings: prompt head, per segment (timestamp, kept tokens), prompt tail."""
        tok = self.llm_tokenizer
        embed = self.llm.get_input_embeddings()
        # The prompt and the answer share a decode slot of decode_max_seq positions. A request that
        # names no max_length gets the checkpoint's limit, lowered to what the slot can hold.
        capacity = self.decode_max_seq - req.max_new_tokens
        if req.max_length is not None and req.max_length > capacity:
            raise InputError(
                f"max_length {req.max_length} + max_new_tokens {req.max_new_tokens} exceeds this server's "
                f"context of {self.decode_max_seq} tokens")
        max_length = req.max_length or min(self.config.tokenizer_model_max_length, capacity)
        try:
            head_text, tail_text = llm_prompt_texts(req.question, req.history)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        head = tok(head_text, add_special_tokens=False).input_ids
        tail = tok(tail_text, add_special_tokens=False).input_ids
        room = max_length - TRUNCATION_RESERVE - len(head) - len(tail)
        if room <= 0:
            raise InputError(
                f"the question and history take {len(head) + len(tail)} tokens; the limit is {max_length - TRUNCATION_RESERVE}"
            )
        kept = [features[i, : int(n)] for i, n in enumerate(alloc)]  # step 8.4: "head" strategy
        projected = self.projector(torch.cat(kept)).split([int(n) for n in alloc])
        pieces = []
        for i, proj in enumerate(projected):
            ts = tok(segment_timestamp_text(i, req.encoding.fps), add_special_tokens=False).input_ids
            pieces += [embed(torch.tensor(ts, device=self.device)), proj.to(embed.weight.dtype)]
        visual = torch.cat(pieces)[:room]
        ids = lambda xs: embed(torch.tensor(xs, device=self.device))  # noqa: E731
        return torch.cat([ids(head), visual, ids(tail)])[:max_length]


class _Laps:
    """Phase timer; with a CUDA ``device`` it synchronises first, so a lap is the work's real time."""

    def __init__(self, device: torch.device | None) -> None:
        self.sync = device is not None and device.type == "cuda"
        self.t = time.perf_counter()
        self.times: dict[str, float] = {}

    def lap(self, name: str) -> float:
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.times[name], self.t = now - self.t, now
        return self.times[name]


def _row_chunks(row_tokens: list[int], budget: int = COMPRESS_CHUNK_TOKENS) -> list[slice]:
    """Split rows into consecutive chunks of at most ``budget`` tokens (at least one row each)."""
    chunks, start, total = [], 0, 0
    for i, n in enumerate(row_tokens):
        if i > start and total + n > budget:
            chunks.append(slice(start, i))
            start, total = i, 0
        total += n
    if start < len(row_tokens):
        chunks.append(slice(start, len(row_tokens)))
    return chunks


def _runs(items: list[tuple[int, int]]) -> list[tuple[int, slice]]:
    """Group (request, segment) items into runs of consecutive segments of one request."""
    runs: list[tuple[int, slice]] = []
    for r, s in items:
        if runs and runs[-1][0] == r and runs[-1][1].stop == s:
            runs[-1] = (r, slice(runs[-1][1].start, s + 1))
        else:
            runs.append((r, slice(s, s + 1)))
    return runs
