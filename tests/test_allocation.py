"""Adaptive Token Allocation follows the reference rule on its edge cases."""

import numpy as np

from models.allocation import allocate_tokens


def test_equal_scores_share_the_budget_evenly_capped_at_k():
    assert allocate_tokens(np.full(5, 0.3, np.float32), budget=8192, max_tokens=128).tolist() == [128] * 5
    assert allocate_tokens(np.full(4, 0.3, np.float32), budget=100, max_tokens=128).tolist() == [25] * 4


def test_ideal_allocation_when_it_fits_the_budget():
    out = allocate_tokens(np.array([0.0, 0.5, 1.0], np.float32), budget=8192, max_tokens=16)
    assert out.tolist() == [4, 10, 16]


def test_over_budget_distributes_extra_by_weight_and_leftover_to_largest():
    scores = np.array([0.1, 0.9, 0.5, 0.7], np.float32)
    out = allocate_tokens(scores, budget=30, max_tokens=16)
    assert out.sum() == 30
    assert out.min() >= 4 and out.max() <= 16
    assert out.argmax() == 1 and out.argmin() == 0


def test_tiny_budget_lowers_the_minimum():
    out = allocate_tokens(np.array([0.2, 0.4, 0.6, 0.8, 1.0], np.float32), budget=7, max_tokens=16)
    # m = max(1, 7 // 5) = 1; the 2 extra tokens all floor to 0 and go as leftovers to the two largest
    assert out.tolist() == [1, 1, 1, 2, 2]


def test_no_segments():
    assert allocate_tokens(np.zeros(0, np.float32), budget=10, max_tokens=16).size == 0
