"""Tempo checkpoint configuration and the on-disk layout of a Tempo-6B checkpoint pair.

A Tempo-6B directory holds ``config.json`` (``model_type: tempo_qwen`` with the ``mm_*`` fields),
the tokenizer and safetensors with the LLM (``model.*``, ``lm_head.*``), the projector
(``model.mm_projector.*``), the memory tokens (``model.vision_tower_aux_list.0.compression_tokens``)
and the fine-tuned SVLM (``model.vision_tower_aux_list.0.vlm.*``). The base Qwen3-VL-2B-Instruct
directory named in ``mm_vision_tower_aux_list`` supplies the SVLM config, its tokenizer and the
router vector (its output embeddings of "Yes" and "No").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from models.errors import CheckpointError

TINY_DIR = Path(__file__).parent / "assets" / "tiny"
TINY_CHECKPOINT = TINY_DIR / "Tempo-6B"

# Fields of a Tempo config that configure the Qwen3 LLM (everything else is Tempo's own).
_LLM_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
    "rope_theta", "rope_scaling", "attention_bias", "attention_dropout", "tie_word_embeddings",
    "use_sliding_window", "sliding_window", "max_window_layers", "layer_types", "pad_token_id",
    "eos_token_id", "bos_token_id",
)


@dataclass(frozen=True)
class TempoConfig:
    checkpoint_dir: Path
    svlm_dir: Path
    raw: dict  # the checkpoint's config.json
    num_compression_tokens: int  # K
    mm_hidden_size: int  # D_s
    hidden_size: int  # D_l
    projector_type: str
    tokenizer_model_max_length: int
    visual_token_budget: int

    @property
    def llm_config(self) -> dict:
        return {k: self.raw[k] for k in _LLM_FIELDS if k in self.raw}

    @classmethod
    def from_dir(cls, checkpoint_dir: str | Path | None, svlm_dir: str | Path | None = None) -> TempoConfig:
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else TINY_CHECKPOINT
        config_file = ckpt / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"no config.json in checkpoint directory {ckpt}")
        raw = json.loads(config_file.read_text())
        if raw.get("model_type") != "tempo_qwen":
            raise CheckpointError(f"{ckpt} is not a Tempo checkpoint (model_type={raw.get('model_type')!r})")
        if raw.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
            raise CheckpointError(f"unsupported mm_projector_type {raw['mm_projector_type']!r}")
        svlm = Path(svlm_dir) if svlm_dir is not None else resolve_svlm_dir(ckpt, raw)
        if not (svlm / "config.json").is_file():
            raise CheckpointError(f"no config.json in SVLM directory {svlm}")
        return cls(
            checkpoint_dir=ckpt,
            svlm_dir=svlm,
            raw=raw,
            num_compression_tokens=int(raw["num_compression_tokens"]),
            mm_hidden_size=int(raw["mm_hidden_size"]),
            hidden_size=int(raw["hidden_size"]),
            projector_type=raw.get("mm_projector_type", "mlp2x_gelu"),
            tokenizer_model_max_length=int(raw.get("tokenizer_model_max_length", 16384)),
            visual_token_budget=int(raw.get("visual_token_budget", 8192)),
        )


def resolve_svlm_dir(checkpoint_dir: Path, raw: dict) -> Path:
    """Find the local directory of the base SVLM that the config names by hub id.

    Looked up, in order: ``$TEMPO_SVLM_PATH``; ``<checkpoint>/../<hub id>`` (the layout of the embedded
    tiny model and of a models volume holding both); ``$HF_HOME``-style snapshot caches. Nothing is
    ever downloaded.
    """
    names = raw.get("mm_vision_tower_aux_list") or []
    if not names:
        raise CheckpointError("config has no mm_vision_tower_aux_list naming the SVLM")
    name = names[0]
    candidates: list[Path] = []
    if env := os.environ.get("TEMPO_SVLM_PATH"):
        candidates.append(Path(env))
    if Path(name).is_absolute():
        candidates.append(Path(name))
    candidates += [checkpoint_dir.parent / name, checkpoint_dir.parent / name.split("/")[-1]]
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub")
    snapshots = hub / f"models--{name.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir():
        candidates += sorted(snapshots.iterdir())
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    raise CheckpointError(
        f"cannot find the SVLM {name!r} locally (looked in {', '.join(map(str, candidates))}); "
        "pass svlm_dir / --svlm / TEMPO_SVLM_PATH"
    )
