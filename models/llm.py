"""The answering LLM (Qwen3-4B): input assembly from kept memory tokens, truncation, and decoding.

Checkpoint layout (Tempo-6B safetensors) -> Qwen3ForCausalLM:
    model.embed_tokens/layers/norm.*  -> model.*        (the Tempo-only prefixes mm_projector and
    lm_head.weight (if untied)        -> lm_head.weight  vision_tower_aux_list are skipped here)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 1024
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()


@dataclass
class Generation:
    token_ids: list[int]
    step_logits: torch.Tensor  # [steps, vocab] float32
    finish_reason: str  # "stop" (a stop token) | "length"
    prefill_s: float
    decode_s: float


def _pick(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator | None) -> int:
    if params.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # always keeps the top token
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=gen))


@torch.inference_mode()
def generate(
    model: Qwen3ForCausalLM,
    inputs_embeds: torch.Tensor,  # [1, L, D_l]
    params: SamplingParams,
    on_token: Callable[[int], bool | None] | None = None,
    keep_logits: bool = False,
) -> Generation:
    """Decode one sequence. ``on_token(id)`` may return True to stop early (a stop string matched)."""
    gen = None
    if params.temperature > 0:
        gen = torch.Generator(device=inputs_embeds.device)
        if params.seed is not None:
            gen.manual_seed(params.seed)
        else:
            gen.seed()
    t0 = time.perf_counter()
    out = model(inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[0, -1].float()
    prefill_s = time.perf_counter() - t0
    ids: list[int] = []
    kept: list[torch.Tensor] = []
    finish = "length"
    t1 = time.perf_counter()
    for step in range(params.max_new_tokens):
        if keep_logits:
            kept.append(logits.cpu())
        token = _pick(logits, params, gen)
        if token in params.stop_token_ids:
            finish = "stop"
            break
        ids.append(token)
        if on_token is not None and on_token(token):
            finish = "stop"
            break
        if step + 1 == params.max_new_tokens:
            break
        out = model(
            input_ids=torch.tensor([[token]], device=inputs_embeds.device), past_key_values=cache, use_cache=True
        )
        cache, logits = out.past_key_values, out.logits[0, -1].float()
    return Generation(
        token_ids=ids,
        step_logits=torch.stack(kept) if kept else torch.zeros(0, model.config.vocab_size),
        finish_reason=finish,
        prefill_s=prefill_s,
        decode_s=time.perf_counter() - t1,
    )
