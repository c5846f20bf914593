"""The answering LLM (Qwen3-4B): building the HF module and loading its weights.

Decoding runs in ``decoder.py`` (static KV cache, CUDA graphs) driven by ``generation.py``.

Checkpoint layout (Tempo-6B safetensors) -> Qwen3ForCausalLM:
    model.embed_tokens/layers/norm.*  -> model.*        (the Tempo-only prefixes mm_projector and
    lm_head.weight (if untied)        -> lm_head.weight  vision_tower_aux_list are skipped here)
"""

from __future__ import annotations

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from models.checkpoint import CheckpointReader

_NOT_LLM = ("model.mm_projector.", "model.vision_tower_aux_list.")


def build_llm(llm_config: dict, dtype: torch.dtype, attn_implementation: str) -> Qwen3ForCausalLM:
    config = Qwen3Config(**llm_config)
    config._attn_implementation = attn_implementation
    model = Qwen3ForCausalLM(config).to(dtype)
    return model.eval()


def load_llm_weights(model: Qwen3ForCausalLM, reader: CheckpointReader) -> None:
    names = [n for n in reader.names() if not n.startswith(_NOT_LLM)]
    state = reader.read(names, model.dtype)
    if "lm_head.weight" not in state and model.config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"LLM weights do not fit Qwen3: missing={missing[:5]} unexpected={unexpected[:5]}")
    if model.config.tie_word_embeddings:
        model.tie_weights()
