"""A Qwen3 decoder stack run with fused weights: the shared core of our fast paths.

Qwen3 (the answering LLM) and Qwen3-VL's text model (the SVLM) have the same layer: RMSNorm, a
GQA attention with per-head q/k RMSNorm and rotary embeddings, a SwiGLU MLP. ``FusedQwen3Stack``
runs those layers from the HF modules' own weights, with the q/k/v and gate/up projections fused
into one GEMM each (the HF modules keep views into the fused tensors, so no memory is added) and
the q/k norm and rotary embedding applied to queries and keys in one pass. Attention itself is the
caller's: ``run(x, cos, sin, attend)`` hands each layer's q, k, v to ``attend``, which decides
where keys and values come from (a static KV cache, a cached prompt prefix, ...).

For text tokens Qwen3-VL's multimodal rotary embedding uses one position for all three axes,
which makes it the ordinary 1-D rotary embedding, so the same ``rope`` serves both models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3 RMSNorm: normalise in float32, cast back, then scale (weight broadcasts on the last dims)."""
    return weight * F.rms_norm(x.float(), x.shape[-1:], eps=eps).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _add_rms_norm(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add, then the next RMSNorm: returns (x + delta, norm(x + delta))."""
    x = x + delta
    return x, rms_norm(x, weight, eps)


def _qk_norm_rope(qk: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-head RMSNorm of queries and keys, then the rotary embedding. qk: [B, T, heads, hd]."""
    qk = rms_norm(qk, weight, eps)
    return qk * cos + _rotate_half(qk) * sin


def _silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def _masked_softmax(scores: torch.Tensor, allowed: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    return (scores.float() * scale).masked_fill(~allowed, float("-inf")).softmax(-1).to(dtype)


class _CompiledOrEager:
    """``torch.compile(fn)``, falling back to ``fn`` for good if compiling fails (e.g. no C compiler
    for Triton's launcher in a slim image): slower, never broken."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.compiled: Callable | None = torch.compile(fn, dynamic=True, fullgraph=True)

    def __call__(self, *args):  # noqa: ANN002, ANN204
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly instead
                log.warning("torch.compile failed, running eagerly", extra={"kernel": self.fn.__name__, "error": str(exc)[:200]})
                self.compiled = None
        return self.fn(*args)


class _Kernels:
    """The elementwise pieces of a layer; on CUDA each is compiled into one fused kernel.

    Eager PyTorch runs a norm or a rotary embedding as several kernels; at decode time (one token per
    sequence) their launches, not the arithmetic, dominate a step. ``torch.compile`` with dynamic
    shapes fuses each piece once for every batch and length (first call compiles, a few seconds).
    """

    def __init__(self, compile_kernels: bool) -> None:
        wrap = _CompiledOrEager if compile_kernels else (lambda f: f)
        self.norm = wrap(rms_norm)
        self.add_norm = wrap(_add_rms_norm)
        self.qk_norm_rope = wrap(_qk_norm_rope)
        self.silu_mul = wrap(_silu_mul)
        self.masked_softmax = wrap(_masked_softmax)


def _fuse_linears(*linears: nn.Linear) -> torch.Tensor:
    """One weight for several Linears over the same input; the modules keep views into it."""
    assert all(lin.bias is None for lin in linears), "Qwen3 projections have no bias"
    fused = torch.cat([lin.weight.data for lin in linears])
    start = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight = nn.Parameter(fused[start: start + n], requires_grad=False)
        start += n
    return fused


def rope_theta(config) -> float:  # noqa: ANN001 - an HF text config
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


class FusedQwen3Stack:
    def __init__(self, layers: nn.ModuleList, norm: nn.Module, config,  # noqa: ANN001 - an HF text config
                 compile_kernels: bool | None = None) -> None:
        self.layers = layers
        self.norm = norm
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.eps = config.rms_norm_eps
        self.intermediate = config.intermediate_size
        self.q_dim, self.kv_dim = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        weight = layers[0].input_layernorm.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.k = _Kernels(self.device.type == "cuda" if compile_kernels is None else compile_kernels)
        hd = self.head_dim
        self.inv_freq = 1.0 / (rope_theta(config) ** (torch.arange(0, hd, 2, dtype=torch.float, device=self.device) / hd))
        self.qkv_w, self.gate_up_w, self.qk_norm_w = [], [], []
        for layer in layers:
            a, m = layer.self_attn, layer.mlp
            self.qkv_w.append(_fuse_linears(a.q_proj, a.k_proj, a.v_proj))
            self.gate_up_w.append(_fuse_linears(m.gate_proj, m.up_proj))
            # q_norm for the H query heads and k_norm for the KV key heads, applied in one go
            self.qk_norm_w.append(torch.cat([a.q_norm.weight.expand(self.n_heads, -1), a.k_norm.weight.expand(self.n_kv, -1)]))

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [..., head_dim] for integer ``positions`` [...]."""
        freqs = positions.float()[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def run(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: Attend,
            after_layer: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """x: [B, T, D]; cos/sin: [B, T, head_dim]; ``attend(layer, q, k, v)`` -> [B, H, T, head_dim].

        ``after_layer(i, x)`` may change each layer's output (Qwen3-VL adds its deepstack features
        there). Returns the final-normed hidden states [B, T, D].
        """
        b, t, _ = x.shape
        h, kv, hd = self.n_heads, self.n_kv, self.head_dim
        c, s = cos[:, :, None], sin[:, :, None]
        k = self.k
        n = len(self.layers)
        y = k.norm(x, self.layers[0].input_layernorm.weight, self.eps)
        for i, layer in enumerate(self.layers):
            qkv = F.linear(y, self.qkv_w[i])  # [B, T, (H + 2 KV) * hd]
            qk = qkv[..., : self.q_dim + self.kv_dim].view(b, t, h + kv, hd)
            v = qkv[..., self.q_dim + self.kv_dim:].view(b, t, kv, hd)
            qk = k.qk_norm_rope(qk, self.qk_norm_w[i], c, s, self.eps)  # queries and keys together
            q, key = qk[:, :, :h].transpose(1, 2), qk[:, :, h:].transpose(1, 2)  # [B, H, T, hd], [B, KV, T, hd]
            out = attend(i, q, key, v.transpose(1, 2))  # [B, H, T, hd]
            x, y = k.add_norm(x, layer.self_attn.o_proj(out.transpose(1, 2).reshape(b, t, -1)),
                              layer.post_attention_layernorm.weight, self.eps)
            gate, up = F.linear(y, self.gate_up_w[i]).split(self.intermediate, dim=-1)
            delta = layer.mlp.down_proj(k.silu_mul(gate, up))
            next_w = self.layers[i + 1].input_layernorm.weight if i + 1 < n else self.norm.weight
            if after_layer is not None:
                x = after_layer(i, x + delta)
                y = k.norm(x, next_w, self.eps)
            else:
                x, y = k.add_norm(x, delta, next_w, self.eps)
        return y  # the last layer's "next norm" is the final norm

    def grouped_attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                          allowed: torch.Tensor) -> torch.Tensor:
        """Attention of q [B, H, T, hd] over keys/values [B, KV, S, hd] where ``allowed`` [B, 1|T, S] (bool).

        Each KV head serves its ``H / KV`` query heads through two batched GEMMs (no K/V repeat);
        softmax in float32.
        """
        b, h, t, hd = q.shape
        rep = h // self.n_kv
        qg = q.reshape(b, self.n_kv, rep * t, hd)  # query head = kv head * rep + r
        scores = torch.matmul(qg, keys.transpose(-1, -2)).view(b, self.n_kv, rep, t, -1)  # [B, KV, rep, T, S]
        probs = self.k.masked_softmax(scores, allowed[:, None, None], hd**-0.5, q.dtype).view(b, self.n_kv, rep * t, -1)
        return torch.matmul(probs, values).view(b, h, t, hd)
