"""Continuous batched generation over a ``FastDecoder``: sequences join and leave between steps.

    gen = BatchGenerator(decoder)
    seq = gen.add(embeds, params, on_token)   # prefill into a free slot, pick the first token
    while gen.active: gen.step()              # one decode step for every active sequence

Active sequences always occupy slots ``0..n-1``; when one finishes, the last one's cache moves into
its slot, so a decode step touches only ``n`` slots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from models.decoder import FastDecoder


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 1024
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Greedy when temperature is 0, else temperature + nucleus (top-p) sampling. logits: [vocab]."""
    if params.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # always keeps the top token
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p * keep)
    return int(torch.multinomial(probs, 1, generator=generator))


@dataclass
class Sequence:
    params: SamplingParams
    on_token: Callable[[int], bool | None] | None
    keep_logits: bool
    slot: int = -1
    position: int = 0  # where the next token's KV goes
    next_token: int = -1
    token_ids: list[int] = field(default_factory=list)
    step_logits: list[torch.Tensor] = field(default_factory=list)
    finish_reason: str | None = None
    generator: torch.Generator | None = None
    prefill_s: float = 0.0
    first_token_at: float = 0.0
    decode_s: float = 0.0

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class BatchGenerator:
    def __init__(self, decoder: FastDecoder) -> None:
        self.decoder = decoder
        self.active: list[Sequence] = []  # active[i] lives in slot i

    @property
    def free_slots(self) -> int:
        return self.decoder.cache.slots - len(self.active)

    def add(self, embeds: torch.Tensor, params: SamplingParams, on_token: Callable[[int], bool | None] | None = None,
            keep_logits: bool = False) -> Sequence:
        """Prefill ``embeds`` [L, D] and choose the first token. Raises if no slot is free."""
        if self.free_slots <= 0:
            raise RuntimeError("no free decode slot")
        seq = Sequence(params, on_token, keep_logits, slot=len(self.active), position=embeds.shape[0])
        if params.temperature > 0:
            seq.generator = torch.Generator(device=self.decoder.device)
            if params.seed is not None:
                seq.generator.manual_seed(params.seed)
            else:
                seq.generator.seed()
        t0 = time.perf_counter()
        logits = self.decoder.prefill(seq.slot, embeds)
        self._accept(seq, logits)
        seq.prefill_s = time.perf_counter() - t0
        seq.first_token_at = time.perf_counter()
        if not seq.done:
            self.active.append(seq)
        return seq

    def _accept(self, seq: Sequence, logits: torch.Tensor) -> None:
        """Record a step's logits and pick its token."""
        if seq.keep_logits:
            seq.step_logits.append(logits.cpu())
        self._accept_token(seq, sample_token(logits, seq.params, seq.generator))

    def _accept_token(self, seq: Sequence, token: int) -> None:
        """Stream the token and decide whether the sequence ends."""
        if token in seq.params.stop_token_ids:
            seq.finish_reason = "stop"
            return
        seq.token_ids.append(token)
        seq.next_token = token
        if seq.on_token is not None and seq.on_token(token):
            seq.finish_reason = "stop"
        elif len(seq.token_ids) >= seq.params.max_new_tokens or seq.position >= self.decoder.cache.max_seq:
            seq.finish_reason = "length"

    def step(self) -> list[Sequence]:
        """One decode step for every active sequence; returns the sequences that finished."""
        if not self.active:
            return []
        t0 = time.perf_counter()
        dev = self.decoder.device
        tokens = torch.tensor([s.next_token for s in self.active], device=dev)
        positions = torch.tensor([s.position for s in self.active], device=dev)
        logits = self.decoder.decode(tokens, positions, max(s.position for s in self.active))
        greedy = all(s.params.temperature <= 0 and not s.keep_logits for s in self.active)
        picks = logits.argmax(-1).tolist() if greedy else None
        for i, seq in enumerate(self.active):
            seq.position += 1
            if picks is not None:  # fast path: one device->host copy for the whole batch
                self._accept_token(seq, picks[i])
            else:
                self._accept(seq, logits[i])
        elapsed = time.perf_counter() - t0
        for seq in self.active:
            seq.decode_s += elapsed
        finished = [s for s in self.active if s.done]
        if finished:
            self._compact()
        return finished

    def _compact(self) -> None:
        """Drop finished sequences, moving survivors down so slots 0..n-1 stay occupied."""
        survivors = [s for s in self.active if not s.done]
        for new_slot, seq in enumerate(survivors):
            if seq.slot != new_slot:
                self.decoder.cache.move_slot(seq.slot, new_slot, seq.position)
                seq.slot = new_slot
        self.active = survivors

    def run(self) -> None:
        while self.active:
            self.step()
