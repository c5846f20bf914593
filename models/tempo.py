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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase, Qwen3VLConfig

from models.allocation import allocate_tokens
from models.checkpoint import CheckpointReader, checkpoint_revision
from models.compressor import Compressor, VisionFeatures
from models.config import TempoConfig
from models.errors import InputError
from models.llm import SamplingParams, build_llm, generate, load_llm_weights
from models.preprocess import SEGMENT_FRAMES, preprocess_segments
from models.projector import Projector
from models.prompts import (
    SVLMTokens,
    llm_prompt_texts,
    segment_timestamp_text,
    svlm_prefix_text,
    svlm_question_text,
)

log = logging.getLogger(__name__)

# Segments per compressor forward pass: bounds activation memory on long videos; rows are independent.
COMPRESS_CHUNK = 32
# The reference's reserve for text tokens when it truncates the visual sequence (step 10).
TRUNCATION_RESERVE = 16


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer class the directory names (avoids AutoConfig on ``tempo_qwen``)."""
    cfg = json.loads((directory / "tokenizer_config.json").read_text())
    cls = getattr(transformers, cfg.get("tokenizer_class", "AutoTokenizer"), transformers.AutoTokenizer)
    return cls.from_pretrained(str(directory))


def pick_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_attention(device: torch.device) -> str:
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


@dataclass
class SegmentGrounding:
    index: int
    start_s: float
    end_s: float
    relevance: float
    tokens_kept: int


@dataclass
class VideoEncoding:
    """The question-independent part of a video: what the segment cache stores."""

    fps: float  # effective sampling rate (real_fps)
    num_frames: int  # sampled frames
    frame_counts: list[int]  # [S] frames per segment after even padding
    grid_thw: torch.Tensor  # [S, 3]
    vision: VisionFeatures
    prefix_ids: list[list[int]]  # [S] SVLM prompt ids up to the end of each segment's video
    model_revision: str

    @property
    def num_segments(self) -> int:
        return len(self.prefix_ids)

    @property
    def nbytes(self) -> int:
        v = self.vision
        return v.embeds.numel() * v.embeds.element_size() + v.deepstack.numel() * v.deepstack.element_size()

    @property
    def device(self) -> torch.device:
        return self.vision.embeds.device

    def segment_times(self) -> list[tuple[float, float]]:
        return [
            (i * SEGMENT_FRAMES / self.fps, min((i + 1) * SEGMENT_FRAMES, self.num_frames) / self.fps)
            for i in range(self.num_segments)
        ]

    def to(self, device: torch.device | str) -> VideoEncoding:
        v = self.vision
        vision = VisionFeatures(v.embeds.to(device), v.deepstack.to(device), list(v.tokens_per_segment))
        return VideoEncoding(self.fps, self.num_frames, self.frame_counts, self.grid_thw, vision, self.prefix_ids, self.model_revision)

    def save(self, directory: str | Path) -> None:
        """Write ``tensors.safetensors`` + ``meta.json``; the meta file is written last, as the commit mark."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {"embeds": self.vision.embeds.contiguous().cpu(), "deepstack": self.vision.deepstack.contiguous().cpu(), "grid_thw": self.grid_thw.cpu()},
            str(directory / "tensors.safetensors"),
        )
        meta = {
            "fps": self.fps, "num_frames": self.num_frames, "frame_counts": self.frame_counts,
            "tokens_per_segment": self.vision.tokens_per_segment, "prefix_ids": self.prefix_ids,
            "model_revision": self.model_revision,
        }
        tmp = directory / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        tmp.replace(directory / "meta.json")

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | str = "cpu") -> VideoEncoding:
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        t = load_file(str(directory / "tensors.safetensors"), device=str(device))
        vision = VisionFeatures(t["embeds"], t["deepstack"], meta["tokens_per_segment"])
        return cls(meta["fps"], meta["num_frames"], meta["frame_counts"], t["grid_thw"].cpu(), vision,
                   meta["prefix_ids"], meta["model_revision"])


@dataclass
class AskResult:
    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    segments: list[SegmentGrounding]
    timings: dict[str, float]
    relevance: np.ndarray  # [S] float32
    allocations: np.ndarray  # [S] int64
    # Inspection arrays (filled by run() / answer(debug=True)):
    compression_features: np.ndarray | None = None  # [S, K, D_s]
    llm_inputs_embeds: np.ndarray | None = None  # [L, D_l]
    step_logits: np.ndarray | None = None  # [steps, vocab]
    extra: dict = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


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
    ) -> TempoPipeline:
        """Load a Tempo-6B checkpoint (default: the embedded tiny random test model) onto ``device``.

        ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU.
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
        return cls(config, compressor, projector, llm, svlm_tok, llm_tok, dev, revision)

    @property
    def is_tiny_test_model(self) -> bool:
        from models.config import TINY_CHECKPOINT

        return self.config.checkpoint_dir.resolve() == TINY_CHECKPOINT.resolve()

    def count_tokens(self, text: str) -> int:
        return len(self.llm_tokenizer(text, add_special_tokens=False).input_ids)

    # --- question-independent work ------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, frames: np.ndarray, fps: float) -> VideoEncoding:
        """Steps 2-4 and the vision tower: everything about a video that no question changes."""
        if frames.ndim != 4 or frames.shape[0] == 0:
            raise InputError(f"expected frames [T, H, W, 3] with T >= 1, got shape {tuple(frames.shape)}")
        if not fps > 0:
            raise InputError(f"fps must be positive, got {fps}")
        pre = preprocess_segments(frames, device=self.device)
        vision = self.compressor.encode_vision(pre.pixel_values, pre.grid_thw)
        merge = self.compressor.vlm.visual.spatial_merge_size**2
        prefix_ids = []
        for i, (count, (_, h, w)) in enumerate(zip(pre.frame_counts, pre.grid_thw.tolist(), strict=True)):
            text = svlm_prefix_text(i, count, h * w // merge, fps)
            prefix_ids.append(self.svlm_tokenizer(text, add_special_tokens=False).input_ids)
        return VideoEncoding(fps, int(frames.shape[0]), pre.frame_counts, pre.grid_thw, vision, prefix_ids, self.model_revision)

    # --- per-question work ----------------------------------------------------------------------------
    @torch.inference_mode()
    def answer(
        self,
        encoding: VideoEncoding,
        question: str,
        *,
        visual_token_budget: int = 8192,
        max_length: int | None = None,
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
        history: list[dict[str, str]] | None = None,
        on_token: Callable[[int, str], None] | None = None,
        debug: bool = False,
    ) -> AskResult:
        if not question.strip():
            raise InputError("the question is empty")
        if visual_token_budget < 1:
            raise InputError("visual_token_budget must be at least 1")
        if encoding.model_revision != self.model_revision:
            raise InputError("the video encoding was made by another model revision")
        max_length = max_length or self.config.tokenizer_model_max_length
        enc = encoding if encoding.device == self.device else encoding.to(self.device)

        # Steps 5-7: compress every segment with the question.
        t0 = time.perf_counter()
        question_ids = self.svlm_tokenizer(svlm_question_text(question), add_special_tokens=False).input_ids
        features, relevance = self._compress(enc, question_ids)
        # Step 8: adaptive token allocation.
        alloc = allocate_tokens(relevance.cpu().numpy(), visual_token_budget, self.compressor.num_memory_tokens)
        # Steps 9-10: projector, timestamps, prompt, truncation.
        embeds = self._llm_inputs(enc, features, alloc, question, history, max_length)
        compress_s = time.perf_counter() - t0

        detok = _StreamingText(self.llm_tokenizer, stop or [], on_token)
        params = SamplingParams(max_new_tokens, temperature, top_p, seed, self.stop_token_ids)
        gen = generate(self.llm, embeds[None], params, on_token=detok.push, keep_logits=debug)
        text = detok.final_text(gen.token_ids)
        finish = "stop" if detok.stopped else gen.finish_reason

        rel = relevance.cpu().numpy().astype(np.float32)
        segments = [
            SegmentGrounding(i, round(a, 3), round(b, 3), float(rel[i]), int(alloc[i]))
            for i, (a, b) in enumerate(encoding.segment_times())
        ]
        return AskResult(
            text=text,
            token_ids=gen.token_ids,
            finish_reason=finish,
            prompt_tokens=int(embeds.shape[0]),
            segments=segments,
            timings={"compress_s": compress_s, "prefill_s": gen.prefill_s, "decode_s": gen.decode_s},
            relevance=rel,
            allocations=alloc,
            compression_features=features.float().cpu().numpy() if debug else None,
            llm_inputs_embeds=embeds.float().cpu().numpy() if debug else None,
            step_logits=gen.step_logits.numpy() if debug else None,
        )

    def run(self, frames: np.ndarray, fps: float, query: str, **kwargs) -> AskResult:
        """Reference-equivalent single call: encode then answer, with every inspection array."""
        kwargs.setdefault("debug", True)
        return self.answer(self.encode(frames, fps), query, **kwargs)

    # --- internals --------------------------------------------------------------------------------
    def _compress(self, enc: VideoEncoding, question_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        slices = enc.vision.segment_slices()
        feats, rels = [], []
        for start in range(0, enc.num_segments, COMPRESS_CHUNK):
            idx = range(start, min(start + COMPRESS_CHUNK, enc.num_segments))
            rows = slice(slices[idx[0]].start, slices[idx[-1]].stop)
            vision = VisionFeatures(
                enc.vision.embeds[rows], enc.vision.deepstack[:, rows], enc.vision.tokens_per_segment[idx[0]: idx[-1] + 1]
            )
            out = self.compressor(
                [enc.prefix_ids[i] + question_ids for i in idx], vision, enc.grid_thw[idx[0]: idx[-1] + 1],
                pad_id=self.svlm_tokens.pad, video_pad_id=self.svlm_tokens.video_pad,
            )
            feats.append(out.features)
            rels.append(out.relevance)
        return torch.cat(feats), torch.cat(rels)

    def _llm_inputs(
        self, enc: VideoEncoding, features: torch.Tensor, alloc: np.ndarray, question: str,
        history: list[dict[str, str]] | None, max_length: int,
    ) -> torch.Tensor:
        """[L, D_l] input embeddings: prompt head, per segment (timestamp, kept tokens), prompt tail."""
        tok = self.llm_tokenizer
        embed = self.llm.get_input_embeddings()
        head_text, tail_text = llm_prompt_texts(question, history)
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
            ts = tok(segment_timestamp_text(i, enc.fps), add_special_tokens=False).input_ids
            pieces += [embed(torch.tensor(ts, device=self.device)), proj.to(embed.weight.dtype)]
        visual = torch.cat(pieces)[:room]
        ids = lambda xs: embed(torch.tensor(xs, device=self.device))  # noqa: E731
        return torch.cat([ids(head), visual, ids(tail)])[:max_length]


class _StreamingText:
    """Turns generated ids into text deltas and applies stop strings.

    Holds back text that ends in an incomplete UTF-8 sequence and text that could still grow into a
    stop string, so a client never receives a stop string or a broken character.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: list[str], on_token: Callable[[int, str], None] | None):
        self.tok = tokenizer
        self.stop = [s for s in stop if s]
        self.on_token = on_token
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False
        self.stop_text: str | None = None

    def _text(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> bool:
        self.ids.append(token)
        text = self._text(self.ids)
        for s in self.stop:
            pos = text.find(s)
            if pos >= 0:
                self.stopped, self.stop_text = True, text[:pos]
                self._emit(token, text[:pos])
                return True
        safe = text
        if safe.endswith("\ufffd"):
            safe = safe.rstrip("\ufffd")
        for s in self.stop:  # hold back a possible stop-string prefix
            for k in range(min(len(s) - 1, len(safe)), 0, -1):
                if safe.endswith(s[:k]):
                    safe = safe[:-k]
                    break
        self._emit(token, safe)
        return False

    def _emit(self, token: int, upto: str) -> None:
        delta = upto[len(self.sent):] if upto.startswith(self.sent) else ""
        self.sent = upto if upto.startswith(self.sent) else self.sent
        if self.on_token is not None:
            self.on_token(token, delta)

    def final_text(self, ids: list[int]) -> str:
        text = self.stop_text if self.stopped else self._text(ids)
        if self.on_token is not None and text.startswith(self.sent) and len(text) > len(self.sent):
            self.on_token(-1, text[len(self.sent):])  # flush held-back text; -1 = no new token
            self.sent = text
        return text
