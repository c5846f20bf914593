"""The records the pipeline exchanges with its callers: requests, results, cached video encodings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.compressor import PrefixKV, VisionFeatures
from models.preprocess import SEGMENT_FRAMES


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
    prefix_kv: PrefixKV | None = None  # the SVLM's KV cache of those prefixes (GPU tier only; large)
    timings: dict[str, float] = field(default_factory=dict)  # how long encode() took, by phase (not saved)

    @property
    def num_segments(self) -> int:
        return len(self.prefix_ids)

    @property
    def nbytes(self) -> int:
        v = self.vision
        vision = v.embeds.numel() * v.embeds.element_size() + v.deepstack.numel() * v.deepstack.element_size()
        return vision + (self.prefix_kv.nbytes if self.prefix_kv is not None else 0)

    @property
    def device(self) -> torch.device:
        return self.vision.embeds.device

    def segment_times(self) -> list[tuple[float, float]]:
        return [
            (i * SEGMENT_FRAMES / self.fps, min((i + 1) * SEGMENT_FRAMES, self.num_frames) / self.fps)
            for i in range(self.num_segments)
        ]

    def to(self, device: torch.device | str, keep_prefix_kv: bool = True) -> VideoEncoding:
        v = self.vision
        vision = VisionFeatures(v.embeds.to(device), v.deepstack.to(device), list(v.tokens_per_segment))
        kv = self.prefix_kv.to(device) if keep_prefix_kv and self.prefix_kv is not None else None
        return VideoEncoding(self.fps, self.num_frames, self.frame_counts, self.grid_thw, vision, self.prefix_ids,
                             self.model_revision, kv)

    def save(self, directory: str | Path) -> None:
        """Write ``tensors.safetensors`` + ``meta.json``; the meta file is written last, as the commit mark.

        The prefix KV cache is not written (about 9 GB for an hour of video at full size); a loaded
        entry recomputes it with ``TempoPipeline.attach_prefix_kv`` when the GPU tier wants it.
        """
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


@dataclass
class AskRequest:
    """One question about one encoded video, with its generation options."""

    encoding: VideoEncoding
    question: str
    visual_token_budget: int = 8192
    max_length: int | None = None  # LLM context limit; default: the checkpoint's tokenizer_model_max_length
    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    history: list[dict[str, str]] | None = None  # earlier turns, oldest first
    on_token: Callable[[int, str], None] | None = None  # (token id or -1 for a final flush, text delta)
    debug: bool = False  # keep features, embeddings and every step's logits
