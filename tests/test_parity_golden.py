"""Our Tempo pipeline computes what the published Tempo-6B code computes (golden cases, float32 CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from models.preprocess import preprocess_segments
from models.prompts import llm_prompt_texts, segment_timestamp_text, svlm_question_text
from tests.conftest import GOLDEN_CASES, golden_case


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.fixture(scope="module", params=GOLDEN_CASES)
def case(request, tiny_pipeline):
    meta, arrays = golden_case(request.param)
    c = meta["case"]
    result = tiny_pipeline.run(
        arrays["frames"], c["fps"], c["query"], visual_token_budget=c["budget"],
        max_length=c["max_len"], max_new_tokens=c["max_new_tokens"],
    )
    return meta, arrays, result


def test_pixel_values_match_reference_checksums():
    meta, arrays = golden_case(GOLDEN_CASES[0])
    pre = preprocess_segments(arrays["frames"])
    assert pre.grid_thw.tolist() == arrays["video_grid_thw"].tolist()
    np.testing.assert_allclose(pre.pixel_values.double().sum(1).numpy(), arrays["pixel_values_row_sums"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(pre.pixel_values.flatten()[::997].numpy(), arrays["pixel_values_sample"], rtol=0, atol=1e-6)


def test_svlm_prompt_ids_match_reference(tiny_pipeline):
    meta, arrays = golden_case(GOLDEN_CASES[0])
    enc = tiny_pipeline.encode(arrays["frames"], meta["case"]["fps"])
    q = tiny_pipeline.svlm_tokenizer(svlm_question_text(meta["case"]["query"]), add_special_tokens=False).input_ids
    for i, prefix in enumerate(enc.prefix_ids):
        n = int(arrays["svlm_attention_mask"][i].sum())
        assert prefix + q == arrays["svlm_input_ids"][i, :n].tolist(), f"segment {i}"
    text0 = tiny_pipeline.svlm_tokenizer.decode(enc.prefix_ids[0] + q)
    assert text0 == meta["svlm_prompt_segment0"]


def test_llm_prompt_and_timestamp_ids_match_reference(tiny_pipeline):
    meta, arrays = golden_case(GOLDEN_CASES[0])
    tok = tiny_pipeline.llm_tokenizer
    head, tail = llm_prompt_texts(meta["case"]["query"])
    assert head + "<image>" + tail == meta["llm_prompt"]
    ids = tok(head, add_special_tokens=False).input_ids + [-200] + tok(tail, add_special_tokens=False).input_ids
    assert ids == arrays["llm_prompt_ids"].tolist()
    for i, (text, ts_ids) in enumerate(zip(meta["segment_timestamp_text"], meta["segment_timestamp_ids"], strict=True)):
        assert segment_timestamp_text(i, meta["case"]["fps"]) == text
        assert tok(text, add_special_tokens=False).input_ids == ts_ids


def test_allocations_and_generated_ids_are_exact(case):
    meta, arrays, result = case
    assert result.allocations.tolist() == arrays["allocations"].tolist()
    assert result.token_ids == arrays["generated_ids"].tolist()
    assert result.text == meta["generated_text"]


def test_relevance_within_1e_5(case):
    _, arrays, result = case
    np.testing.assert_allclose(result.relevance, arrays["relevance"], rtol=0, atol=1e-5)


def test_features_embeddings_and_logits_within_1e_4(case):
    _, arrays, result = case
    assert result.compression_features.shape == arrays["compression_features"].shape
    assert rel_err(result.compression_features, arrays["compression_features"]) < 1e-4
    assert result.llm_inputs_embeds.shape == arrays["llm_inputs_embeds"][0].shape
    assert rel_err(result.llm_inputs_embeds, arrays["llm_inputs_embeds"][0]) < 1e-4
    assert result.step_logits.shape == arrays["step_logits"].shape
    for step, (ours, ref) in enumerate(zip(result.step_logits, arrays["step_logits"], strict=True)):
        assert rel_err(ours, ref) < 1e-4, f"step {step}"
