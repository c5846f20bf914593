"""Fast batched decoding for the answering LLM (Qwen3): a preallocated KV cache and CUDA graphs.

The module shares its weights with the loaded ``Qwen3ForCausalLM`` (no copy) and computes the same
function: per layer ``h = x + o(attn(rope(qk_norm(q, k)), v))``, ``x' = h + mlp(norm(h))``, GQA,
SDPA. What differs is the bookkeeping:

* ``KVCache``: one preallocated tensor per layer, ``[slots, kv_heads, max_seq, head_dim]``. A
  sequence owns a slot; prefill writes positions ``0..L-1``, each decode step writes at ``pos``.
* ``prefill(slot, embeds)``: one sequence's prompt (plain positions 0..L-1, reference step 10).
* ``decode(tokens, positions)``: one step for the sequences in slots ``0..B-1`` (the caller keeps
  active sequences packed at the front). Attention reads only the first ``kv_len`` cache positions,
  where ``kv_len`` is a bucket (power of two) over the longest active sequence; on CUDA each
  (batch bucket, kv bucket) pair is captured once as a CUDA graph and replayed, which removes the
  per-kernel launch cost that dominates eager decoding at small batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import Qwen3ForCausalLM

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _bucket(n: int, buckets: tuple[int, ...]) -> int:
    for b in buckets:
        if n <= b:
            return b
    raise ValueError(f"{n} exceeds the largest bucket {buckets[-1]}")


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3 RMSNorm: normalise in float32, cast back, then scale (weight broadcasts on the last dims)."""
    return weight * F.rms_norm(x.float(), x.shape[-1:], eps=eps).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _fuse_linears(*linears: torch.nn.Linear) -> torch.Tensor:
    """One weight for several Linears over the same input; the modules keep views into it.

    One GEMM instead of several per layer and step, with no extra memory (HF's forward still works).
    """
    assert all(lin.bias is None for lin in linears), "Qwen3 projections have no bias"
    fused = torch.cat([lin.weight.data for lin in linears])
    start = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight = torch.nn.Parameter(fused[start: start + n], requires_grad=False)
        start += n
    return fused


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

    def __init__(self, model: Qwen3ForCausalLM, slots: int, max_seq: int, use_cuda_graphs: bool | None = None) -> None:
        cfg = model.config
        self.model = model
        self.device = model.device
        self.dtype = model.dtype
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.vocab_size = cfg.vocab_size
        theta = cfg.rope_parameters["rope_theta"] if getattr(cfg, "rope_parameters", None) else cfg.rope_theta
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float, device=self.device) / self.head_dim))
        self.cache = KVCache.allocate(cfg.num_hidden_layers, slots, self.n_kv, max_seq, self.head_dim, self.dtype, self.device)
        self.use_cuda_graphs = (self.device.type == "cuda") if use_cuda_graphs is None else use_cuda_graphs
        self.q_dim, self.kv_dim = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        self.qkv_w, self.gate_up_w, self.qk_norm_w = [], [], []
        for layer in model.model.layers:
            a, m = layer.self_attn, layer.mlp
            self.qkv_w.append(_fuse_linears(a.q_proj, a.k_proj, a.v_proj))
            self.gate_up_w.append(_fuse_linears(m.gate_proj, m.up_proj))
            # q_norm for the H query heads and k_norm for the KV key heads, applied in one go
            self.qk_norm_w.append(torch.cat([a.q_norm.weight.expand(self.n_heads, -1), a.k_norm.weight.expand(self.n_kv, -1)]))
        self.intermediate = model.config.intermediate_size
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._graph_pool = torch.cuda.graph_pool_handle() if self.use_cuda_graphs else None  # shared by all graphs
        # Attention reads kv_len cache positions per sequence: buckets of 256 up to 4096, then 1024,
        # so a step reads at most a little more than it needs (one graph per bucket in use).
        self._kv_buckets = tuple(sorted({min(max_seq, n) for n in
                                         [*range(256, 4097, 256), *range(5120, max_seq + 1024, 1024)]}))

    # --- the model function ----------------------------------------------------------------------
    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[..., None] * self.inv_freq  # [..., D/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def _layers(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend) -> torch.Tensor:
        """x: [B, T, D]; cos/sin: [B, T, head_dim]; ``attend(layer, q, k, v)`` -> [B, H, T, head_dim]."""
        b, t, _ = x.shape
        h, kv, hd = self.n_heads, self.n_kv, self.head_dim
        c, s = cos[:, :, None], sin[:, :, None]
        for i, layer in enumerate(self.model.model.layers):
            attn = layer.self_attn
            y = _rms_norm(x, layer.input_layernorm.weight, self.eps)
            qkv = F.linear(y, self.qkv_w[i])  # [B, T, (H + 2 KV) * hd]
            qk = qkv[..., : self.q_dim + self.kv_dim].view(b, t, h + kv, hd)
            v = qkv[..., self.q_dim + self.kv_dim:].view(b, t, kv, hd)
            qk = _rms_norm(qk, self.qk_norm_w[i], self.eps)
            qk = qk * c + _rotate_half(qk) * s  # rope on queries and keys together
            q, k = qk[:, :, :h].transpose(1, 2), qk[:, :, h:].transpose(1, 2)  # [B, H, T, hd], [B, KV, T, hd]
            out = attend(i, q, k, v.transpose(1, 2))  # [B, H, T, hd]
            x = x + attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
            y = _rms_norm(x, layer.post_attention_layernorm.weight, self.eps)
            gate, up = F.linear(y, self.gate_up_w[i]).split(self.intermediate, dim=-1)
            x = x + layer.mlp.down_proj(F.silu(gate) * up)
        return _rms_norm(x, self.model.model.norm.weight, self.eps)

    # --- prefill ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, slot: int, embeds: torch.Tensor) -> torch.Tensor:
        """Run one prompt ``embeds`` [L, D] into ``slot``; returns the last position's logits [vocab] (float32)."""
        length = embeds.shape[0]
        if length > self.cache.max_seq:
            raise ValueError(f"prompt of {length} tokens exceeds the decoder's max_seq {self.cache.max_seq}")
        pos = torch.arange(length, device=self.device)[None]
        cos, sin = self._rope(pos)

        def attend(i: int, q, k, v):
            self.cache.k[i][slot, :, :length] = k[0]
            self.cache.v[i][slot, :, :length] = v[0]
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

        hidden = self._layers(embeds[None].to(self.dtype), cos, sin, attend)
        return self.model.lm_head(hidden[0, -1]).float()

    # --- decode ----------------------------------------------------------------------------------
    def _decode_eager(self, tokens: torch.Tensor, positions: torch.Tensor, kv_len: int) -> torch.Tensor:
        b = tokens.shape[0]
        x = self.model.model.embed_tokens(tokens)[:, None]  # [B, 1, D]
        cos, sin = self._rope(positions[:, None])
        rows = torch.arange(b, device=self.device)
        # attend to cache positions <= own position: [B, 1, 1, kv_len]
        hidden_mask = (torch.arange(kv_len, device=self.device)[None, :] > positions[:, None])[:, None, None, :]
        rep, scale = self.n_heads // self.n_kv, self.head_dim**-0.5

        def attend(i: int, q, k, v):
            # One query per sequence: grouped attention as two batched GEMMs over the cache, each
            # KV head serving its ``rep`` query heads, with no copy of the cache.
            kc, vc = self.cache.k[i], self.cache.v[i]
            kc[rows, :, positions] = k[:, :, 0]
            vc[rows, :, positions] = v[:, :, 0]
            qg = q.reshape(b, self.n_kv, rep, self.head_dim)  # [B, KV, rep, hd]
            scores = torch.matmul(qg, kc[:b, :, :kv_len].transpose(-1, -2)).float() * scale  # [B, KV, rep, S]
            probs = scores.masked_fill(hidden_mask, float("-inf")).softmax(-1).to(q.dtype)
            return torch.matmul(probs, vc[:b, :, :kv_len]).reshape(b, self.n_heads, 1, self.head_dim)

        hidden = self._layers(x, cos, sin, attend)
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
