"""The fast decoder (static KV cache, batched slots) computes exactly what the HF Qwen3 model does."""

from __future__ import annotations

import pytest
import torch

from models.decoder import FastDecoder


def hf_greedy(model, embeds: torch.Tensor, steps: int) -> tuple[list[int], list[torch.Tensor]]:
    out = model(inputs_embeds=embeds[None], use_cache=True)
    cache, logits = out.past_key_values, out.logits[0, -1].float()
    ids, all_logits = [], []
    for _ in range(steps):
        all_logits.append(logits)
        ids.append(int(logits.argmax()))
        out = model(input_ids=torch.tensor([[ids[-1]]]), past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[0, -1].float()
    return ids, all_logits


@pytest.fixture(scope="module")
def llm(tiny_pipeline):
    return tiny_pipeline.llm


@torch.inference_mode()
def test_prefill_and_decode_match_hf_for_concurrent_sequences_of_different_lengths(llm):
    gen = torch.Generator().manual_seed(0)
    d = llm.config.hidden_size
    prompts = [torch.randn(n, d, generator=gen) * 0.5 for n in (37, 11, 60)]
    dec = FastDecoder(llm, slots=4, max_seq=128)
    first = [dec.prefill(i, p) for i, p in enumerate(prompts)]
    tokens = torch.stack([f.argmax() for f in first])
    positions = torch.tensor([len(p) for p in prompts])
    ours: list[list[int]] = [[int(t)] for t in tokens]
    ours_logits: list[list[torch.Tensor]] = [[f] for f in first]
    for _ in range(5):
        logits = dec.decode(tokens, positions)
        for i in range(len(prompts)):
            ours_logits[i].append(logits[i])
        tokens = logits.argmax(-1)
        positions = positions + 1
        for i, t in enumerate(tokens):
            ours[i].append(int(t))
    for i, p in enumerate(prompts):
        ref_ids, ref_logits = hf_greedy(llm, p, 6)
        assert ours[i] == ref_ids, f"sequence {i}"
        for a, b in zip(ours_logits[i], ref_logits, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_moving_a_slot_keeps_its_sequence(llm):
    d = llm.config.hidden_size
    prompt = torch.randn(20, d, generator=torch.Generator().manual_seed(1)) * 0.5
    dec = FastDecoder(llm, slots=3, max_seq=64)
    first = dec.prefill(2, prompt)
    dec.cache.move_slot(2, 0, 20)
    logits = dec.decode(first.argmax()[None], torch.tensor([20]))
    ref_ids, ref_logits = hf_greedy(llm, prompt, 2)
    torch.testing.assert_close(logits[0], ref_logits[1], rtol=1e-4, atol=1e-4)


def test_prompt_longer_than_the_cache_is_refused(llm):
    dec = FastDecoder(llm, slots=1, max_seq=16)
    with pytest.raises(ValueError, match="max_seq"):
        dec.prefill(0, torch.zeros(17, llm.config.hidden_size))


def test_a_kernel_that_fails_to_compile_falls_back_to_eager(monkeypatch):
    from models import qwen3_stack

    def broken_compile(fn, **_):
        def run(*args):
            raise RuntimeError("no C compiler for Triton")
        return run

    monkeypatch.setattr(qwen3_stack.torch, "compile", broken_compile)
    kernel = qwen3_stack._CompiledOrEager(qwen3_stack.rms_norm)
    x, w = torch.randn(2, 3, 8), torch.rand(8)
    torch.testing.assert_close(kernel(x, w, 1e-6), qwen3_stack.rms_norm(x, w, 1e-6))
    assert kernel.compiled is None  # gave up compiling for good
