"""Fast batched decoding for the answering LLM (Qwen3): a preallocated KV cache and CUDA graphs.

The layers run on ``FusedQwen3Stack`` (qwen3_stack.py), which shares its weights with the loaded
``Qwen3ForCausalLM`` (no copy) and computes the same function. What this module adds is the
bookkeeping:

* ``KVCache``: one preallocated tensor per layer, ``[slots, kv_heads, max_seq, head_dim]``. A
  sequence owns a slot; prefill writes positions ``0..L-1``, each decode step writes at ``pos``.
* ``prefill(slot, embeds)``: one sequence's prompt (plain positions 0..L-1, reference step 10).
* ``decode(tokens, positions)``: one step for the sequences in slots ``0..B-1`` (the caller keeps
  active sequences packed at the front). Attention reads only the first ``kv_len`` cache positions,
  where ``kv_len`` is a bucket (256 positions up to 4096, then 1024) over the longest active
  sequence; each step attends with two batched GEMMs per layer (no cache copy); on CUDA each
  (batch bucket, kv bucket) pair is captured once as a CUDA graph and replayed, which removes the
  per-kernel launch cost that dominates eager decoding at small batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import Qwen3ForCausalLM

from models.qwen3_stack import FusedQwen3Stack

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _bucket(n: int, buckets: tuple[int, ...]) -> int:
    for b in buckets:
        if n <= b:
            return b
    raise ValueError(f"{n} exceeds the largest bucket {buckets[-1]}")


@dataclass
class KVCache:
    k: list[torch.Tensor]  # n_layers x [slots, kv_heads, max_seq, head_dim]
    v: list[torch.Tensor]

    @classmethod
    def allocate(cls, n_layers: int, slots: int, kv_heads: int, max_seq: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> KVCache:
        shape = (slots, kv_heads, max_seq, head_dim)
        return cls([torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)],
                   [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)])

    @property
    def slots(self) -> int:
        return self.k[0].shape[0]

    @property
    def max_seq(self) -> int:
        return self.k[0].shape[2]

    def move_slot(self, src: int, dst: int, length: int) -> None:
        """Copy a sequence's first ``length`` positions to another slot (to keep active slots packed)."""
        for k, v in zip(self.k, self.v, strict=True):
            k[dst, :, :length] = k[src, :, :length]
            v[dst, :, :length] = v[src, :, :length]


class FastDecoder:
    """Prefill + batched decode over a static KV cache, sharing weights with an HF Qwen3ForCausalLM."""

    def __init__(self, model: Qwen3ForCausalLM, slots: int, max_seq: int, use_cuda_graphs: bool | None = None,
                 compile_kernels: bool | None = None) -> None:
        cfg = model.config
        self.model = model
        self.device = model.device
        self.dtype = model.dtype
        self.stack = FusedQwen3Stack(model.model.layers, model.model.norm, cfg, compile_kernels)
        self.vocab_size = cfg.vocab_size
        self.cache = KVCache.allocate(cfg.num_hidden_layers, slots, self.stack.n_kv, max_seq, self.stack.head_dim,
                                      self.dtype, self.device)
        self.use_cuda_graphs = (self.device.type == "cuda") if use_cuda_graphs is None else use_cuda_graphs
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._graph_pool = torch.cuda.graph_pool_handle() if self.use_cuda_graphs else None  # shared by all graphs
        # Attention reads kv_len cache positions per sequence: buckets of 256 up to 4096, then 1024,
        # so a step reads at most a little more than it needs (one graph per bucket in use).
        self._kv_buckets = tuple(sorted({min(max_seq, n) for n in
                                         [*range(256, 4097, 256), *range(5120, max_seq + 1024, 1024)]}))

    # --- prefill ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, slot: int, embeds: torch.Tensor) -> torch.Tensor:
        """Run one prompt ``embeds`` [L, D] into ``slot``; returns the last position's logits [vocab] (float32)."""
        length = embeds.shape[0]
        if length > self.cache.max_seq:
            raise ValueError(f"prompt of {length} tokens exceeds the decoder's max_seq {self.cache.max_seq}")
        pos = torch.arange(length, device=self.device)[None]
        cos, sin = self.stack.rope(pos)

        def attend(i: int, q, k, v):
            self.cache.k[i][slot, :, :length] = k[0]
            self.cache.v[i][slot, :, :length] = v[0]
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

        hidden = self.stack.run(embeds[None].to(self.dtype), cos, sin, attend)
        return self.model.lm_head(hidden[0, -1]).float()

    # --- decode ----------------------------------------------------------------------------------
    def _decode_eager(self, tokens: torch.Tensor, positions: torch.Tensor, kv_len: int) -> torch.Tensor:
        b = tokens.shape[0]
        x = self.model.model.embed_tokens(tokens)[:, None]  # [B, 1, D]
        cos, sin = self.stack.rope(positions[:, None])
        rows = torch.arange(b, device=self.device)
        allowed = (torch.arange(kv_len, device=self.device)[None, :] <= positions[:, None])[:, None]  # [B, 1, kv_len]

        def attend(i: int, q, k, v):
            # one query per sequence: write its K/V at its position, attend over the cache prefix
            kc, vc = self.cache.k[i], self.cache.v[i]
            kc[rows, :, positions] = k[:, :, 0]
            vc[rows, :, positions] = v[:, :, 0]
            return self.stack.grouped_attention(q, kc[:b, :, :kv_len], vc[:b, :, :kv_len], allowed)

        hidden = self.stack.run(x, cos, sin, attend)
        return self.model.lm_head(hidden[:, 0]).float()  # [B, vocab]

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, max_position: int | None = None) -> torch.Tensor:
        """One step for the sequences in slots 0..B-1: ``tokens`` [B] at ``positions`` [B] -> logits [B, vocab].

        ``max_position`` (= ``positions.max()``, when the caller knows it) spares a device sync.
        """
        b = tokens.shape[0]
        top = int(positions.max()) if max_position is None else max_position
        kv_len = _bucket(top + 1, self._kv_buckets)
        if not self.use_cuda_graphs:
            return self._decode_eager(tokens, positions, kv_len)
        bb = _bucket(b, tuple(x for x in BATCH_BUCKETS if x <= self.cache.slots) or (self.cache.slots,))
        graph = self._graphs.get((bb, kv_len))
        if graph is None:
            graph = self._graphs[(bb, kv_len)] = _Graph.capture(self, bb, kv_len, self._graph_pool)
        return graph.run(tokens, positions)[:b]


class _Graph:
    """A decode step captured as a CUDA graph for one (batch, kv_len) bucket, with static inputs."""

    def __init__(self, graph: torch.cuda.CUDAGraph, tokens: torch.Tensor, positions: torch.Tensor, logits: torch.Tensor):
        self.graph, self.tokens, self.positions, self.logits = graph, tokens, positions, logits
        self.max_pos = int(positions[0])  # the capture position: max_seq - 1

    @classmethod
    @torch.inference_mode()
    def capture(cls, dec: FastDecoder, batch: int, kv_len: int, pool: tuple | None = None) -> _Graph:
        # Capture writes K/V at the static positions: point them at the last cache position, which
        # holds nothing yet for any live sequence (a step writes its own position before reading it).
        tokens = torch.zeros(batch, dtype=torch.long, device=dec.device)
        positions = torch.full((batch,), dec.cache.max_seq - 1, dtype=torch.long, device=dec.device)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm up kernels / allocator outside the graph
                dec._decode_eager(tokens, positions, kv_len)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            logits = dec._decode_eager(tokens, positions, kv_len)
        log.info("captured decode graph", extra={"batch": batch, "kv_len": kv_len})
        return cls(graph, tokens, positions, logits)

    def run(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        self.tokens[:b].copy_(tokens)
        self.positions[:b].copy_(positions)
        if b < self.tokens.shape[0]:  # padding rows: free slots, written at the unused last position
            self.tokens[b:].zero_()
            self.positions[b:].fill_(self.max_pos)
        self.graph.replay()
        return self.logits
