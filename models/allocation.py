"""Adaptive Token Allocation (reference step 8): how many memory tokens each segment keeps."""

from __future__ import annotations

import numpy as np


def allocate_tokens(scores: np.ndarray, budget: int, max_tokens: int, min_tokens: int = 4) -> np.ndarray:
    """Split ``budget`` visual tokens over segments by relevance ``scores`` [S] (float32).

    Each segment keeps between ``min_tokens`` and ``max_tokens`` (= K); relevant segments get more.
    Returns int64 [S]. Mirrors the reference exactly, including float32 arithmetic and tie-breaking.
    """
    s = np.asarray(scores, dtype=np.float32)
    n_seg = len(s)
    if n_seg == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = min_tokens, max_tokens
    if n_seg * lo > budget:
        lo = max(1, budget // n_seg)
    spread = s.max() - s.min()
    if spread < 1e-8:
        return np.full(n_seg, min(hi, budget // n_seg), dtype=np.int64)
    norm = (s - s.min()) / spread
    ideal = lo + np.floor(norm * (hi - lo)).astype(np.int64)
    if ideal.sum() > budget:
        extra = budget - n_seg * lo
        total = norm.sum()
        weights = norm / total if total >= 1e-8 else np.full(n_seg, 1.0 / n_seg, dtype=np.float32)
        extra_each = np.floor(weights * extra).astype(np.int64)
        leftover = int(extra - extra_each.sum())
        if leftover > 0:
            order = np.argsort(-weights, kind="stable")
            extra_each[order[:leftover]] += 1
        alloc = lo + extra_each
    else:
        alloc = ideal
    return np.clip(alloc, lo, hi).astype(np.int64)
