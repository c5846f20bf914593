"""The query-conditioned compressor: Qwen3-VL-2B reading one segment + the question + K memory tokens.

Checkpoint layout (Tempo-6B safetensors) -> module:
    model.vision_tower_aux_list.0.vlm.model.visual.*          -> vlm.visual.*
    model.vision_tower_aux_list.0.vlm.model.language_model.*  -> vlm.language_model.*
    model.vision_tower_aux_list.0.compression_tokens [1,K,D_s] -> memory
and from the base Qwen3-VL-2B-Instruct directory:
    lm_head.weight, else model.language_model.embed_tokens.weight (tied) -> router = E[Yes] - E[No]

Work splits in two (reference steps 5-7):
  * ``encode_vision`` (question-independent, cacheable per video): the vision tower over every
    segment's pixel rows -> merged visual tokens and the deepstack features.
  * ``forward`` (per question): the language model over [prefix | question | K memory tokens] for
    every segment, with the cached visual tokens scattered in; returns the hidden states at the
    memory positions and the relevance score from the last prompt token.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import Qwen3VLConfig
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel, apply_rotary_pos_emb_vision

from models.checkpoint import CheckpointReader
from models.qwen3_stack import FusedQwen3Stack

TEMPO_SVLM_PREFIX = "model.vision_tower_aux_list.0.vlm.model."
TEMPO_MEMORY_KEY = "model.vision_tower_aux_list.0.compression_tokens"
VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids: 0 text, 1 image, 2 video
# Kernels allowed for the question pass's masked attention (all, as benchmarked). Open question:
# cuDNN builds a plan per new shape and every question length is one; on the tiny model a follow-up
# with a new length spent 0.7 s compressing. scripts/bench_question_lengths.py measures it.
CACHED_PASS_BACKENDS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH]


@dataclass
class VisionFeatures:
    """Vision-tower output for the segments of a video, rows in segment order."""

    embeds: torch.Tensor  # [N, D_s] merged visual tokens, N = sum_i t_i*h_i*w_i/4
    deepstack: torch.Tensor  # [n_deepstack_layers, N, D_s]
    tokens_per_segment: list[int]  # [S]

    def segment_slices(self) -> list[slice]:
        out, start = [], 0
        for n in self.tokens_per_segment:
            out.append(slice(start, start + n))
            start += n
        return out


def _window_attention(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                      position_embeddings: tuple[torch.Tensor, torch.Tensor], **_: object) -> torch.Tensor:
    """Qwen3-VL vision attention over its windows (one per temporal patch group) as ONE batched call.

    Bound to each vision block's ``attn`` in place of HF's forward, whose non-flash path loops over
    the windows (512 small calls per layer for an hour of video). Windows of one video have equal
    length, so they stack into a batch; unequal windows fall back to one call per window.
    """
    n = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = apply_rotary_pos_emb_vision(q, k, *position_embeddings)  # [N, heads, hd]
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    if len(set(lengths)) == 1:
        w = lengths[0]
        q, k, v = (t.reshape(n // w, w, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))  # [windows, heads, w, hd]
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling).transpose(1, 2).reshape(n, -1)
    else:
        outs = [
            F.scaled_dot_product_attention(qi.transpose(0, 1), ki.transpose(0, 1), vi.transpose(0, 1), scale=self.scaling)
            for qi, ki, vi in zip(q.split(lengths), k.split(lengths), v.split(lengths), strict=True)
        ]
        out = torch.cat([o.transpose(0, 1) for o in outs]).reshape(n, -1)
    return self.proj(out)


@dataclass
class PrefixKV:
    """The SVLM's key/value cache of each segment's question-independent prefix (system + video).

    Causal attention makes these states independent of the question, so they are computed once per
    video and each question runs only its own tokens and the memory tokens against them.
    """

    keys: list[torch.Tensor]  # n_layers x [S, kv_heads, P, head_dim] (rows right-padded to P)
    values: list[torch.Tensor]
    mask: torch.Tensor  # [S, P] 1 on real prefix tokens
    next_pos: torch.Tensor  # [S] rope position of the first token after the prefix

    @classmethod
    def allocate(cls, n_layers: int, lengths: list[int], kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> PrefixKV:
        """Room for every row's prefix (right-padded to the longest); filled by ``encode_prefix``."""
        shape = (len(lengths), kv_heads, max(lengths), head_dim)
        mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long().to(device)
        return cls([torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)],
                   [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)],
                   mask, torch.zeros(len(lengths), dtype=torch.long, device=device))

    def rows(self, index: slice) -> PrefixKV:
        width = int(self.mask[index].sum(1).max())  # drop padding columns no row of the slice needs
        return PrefixKV([k[index, :, :width] for k in self.keys], [v[index, :, :width] for v in self.values],
                        self.mask[index, :width], self.next_pos[index])

    @staticmethod
    def cat(parts: list[PrefixKV]) -> PrefixKV:
        """Stack rows of several caches (right-padding each to the widest)."""
        if len(parts) == 1:
            return parts[0]
        width = max(p.mask.shape[1] for p in parts)

        def pad(t: torch.Tensor, dim: int) -> torch.Tensor:
            extra = width - t.shape[dim]
            if extra == 0:
                return t
            shape = list(t.shape)
            shape[dim] = extra
            return torch.cat([t, t.new_zeros(shape)], dim=dim)

        n_layers = len(parts[0].keys)
        return PrefixKV(
            [torch.cat([pad(p.keys[i], 2) for p in parts]) for i in range(n_layers)],
            [torch.cat([pad(p.values[i], 2) for p in parts]) for i in range(n_layers)],
            torch.cat([pad(p.mask, 1) for p in parts]),
            torch.cat([p.next_pos for p in parts]),
        )

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def to(self, device: torch.device | str) -> PrefixKV:
        return PrefixKV([k.to(device) for k in self.keys], [v.to(device) for v in self.values],
                        self.mask.to(device), self.next_pos.to(device))


@dataclass
class CompressorOutput:
    features: torch.Tensor  # [S, K, D_s] hidden states at the memory positions
    relevance: torch.Tensor  # [S] float32 sigmoid((h_last . (E[Yes]-E[No])))


class Compressor(nn.Module):
    def __init__(self, config: Qwen3VLConfig, num_memory_tokens: int) -> None:
        super().__init__()
        self.config = config
        self.vlm = Qwen3VLModel(config)
        if config.vision_config._attn_implementation != "flash_attention_2":  # flash-attn has varlen already
            for block in self.vlm.visual.blocks:
                block.attn.forward = types.MethodType(_window_attention, block.attn)
        d = config.text_config.hidden_size
        self.memory = nn.Parameter(torch.zeros(1, num_memory_tokens, d))
        self.register_buffer("router", torch.zeros(d, dtype=torch.float32), persistent=False)
        self._stack: FusedQwen3Stack | None = None
        # Eager by default: compiled kernels round bf16 differently, and on the tiny test model that
        # moves a relevance score across an allocation boundary (docs/benchmarks.md).
        self.compile_kernels: bool | None = False

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - torch's signature
        super()._apply(fn, recurse)
        self.router = self.router.float()  # relevance is computed in float32 whatever the model dtype
        return self

    @property
    def num_memory_tokens(self) -> int:
        return self.memory.shape[1]

    def load_checkpoint(self, tempo: CheckpointReader, base: CheckpointReader, yes_id: int, no_id: int) -> None:
        dtype = self.memory.dtype
        state = tempo.read_prefix(TEMPO_SVLM_PREFIX, dtype)
        missing, unexpected = self.vlm.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise KeyError(f"SVLM weights do not fit Qwen3-VL: missing={missing[:5]} unexpected={unexpected[:5]}")
        self.memory.data.copy_(tempo.read([TEMPO_MEMORY_KEY])[TEMPO_MEMORY_KEY])
        head = "lm_head.weight" if "lm_head.weight" in base else "model.language_model.embed_tokens.weight"
        emb = base.read([head])[head].float()
        self.router.copy_(emb[yes_id] - emb[no_id])

    @torch.inference_mode()
    def encode_vision(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> VisionFeatures:
        visual = self.vlm.visual
        out = visual(pixel_values.to(visual.dtype), grid_thw=grid_thw.to(pixel_values.device), return_dict=True)
        merge = visual.spatial_merge_size**2
        return VisionFeatures(
            embeds=out.pooler_output,
            deepstack=torch.stack(out.deepstack_features),
            tokens_per_segment=(grid_thw.prod(-1) // merge).tolist(),
        )

    def _prompt_batch(self, prompts: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.memory.device
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        for i, ids in enumerate(prompts):
            input_ids[i, : len(ids)] = torch.tensor(ids)
        return input_ids.to(device), (torch.arange(width)[None, :] < torch.tensor([len(p) for p in prompts])[:, None]).long().to(device)

    def _embed_with_vision(self, input_ids: torch.Tensor, vision: VisionFeatures, video_pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        video_mask = input_ids == video_pad_id  # [S, W]
        embeds = self.vlm.get_input_embeddings()(input_ids)  # [S, W, D_s]
        if int(video_mask.sum()) != vision.embeds.shape[0]:
            raise ValueError(f"{int(video_mask.sum())} video tokens in the prompts, {vision.embeds.shape[0]} features")
        embeds[video_mask] = vision.embeds.to(embeds.dtype)
        return embeds, video_mask

    def _rope_positions(self, input_ids: torch.Tensor, token_type: torch.Tensor, grid_thw: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
        """Qwen3-VL's 3-D rope positions [3, S, W], computed once per distinct row layout.

        HF's ``get_rope_index`` walks every token of every row in Python; the segments of a video
        share a handful of layouts (same grid, same token types), so each is computed once.
        """
        lengths = mask.sum(1).tolist()
        types = token_type.cpu().numpy()
        grids = grid_thw.tolist()
        groups: dict[tuple, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault((n, tuple(grids[i]), types[i, :n].tobytes()), []).append(i)
        positions = torch.zeros(3, *input_ids.shape, dtype=torch.long, device=input_ids.device)
        for rows in groups.values():
            r = rows[0]
            pos, _ = self.vlm.get_rope_index(input_ids[r: r + 1], mm_token_type_ids=token_type[r: r + 1],
                                             video_grid_thw=grid_thw[r: r + 1].to(input_ids.device),
                                             attention_mask=mask[r: r + 1])
            positions[:, rows] = pos
        return positions

    @torch.inference_mode()
    def encode_prefix(self, prefixes: list[list[int]], vision: VisionFeatures, grid_thw: torch.Tensor,
                      pad_id: int, video_pad_id: int, out: PrefixKV, rows: slice) -> None:
        """Run the question-independent prefixes once; their key/value states go to ``out`` at ``rows``."""
        lengths = torch.tensor([len(p) for p in prefixes], device=self.memory.device)
        input_ids, mask = self._prompt_batch(prefixes, int(lengths.max()), pad_id)
        embeds, video_mask = self._embed_with_vision(input_ids, vision, video_pad_id)
        token_type = (video_mask.long() * VIDEO_TOKEN_TYPE).int()
        position_ids = self._rope_positions(input_ids, token_type, grid_thw, mask)
        # Rows are right-padded, so plain causal attention never lets a real token see padding.
        cos, sin = self.vlm.language_model.rotary_emb(embeds, position_ids)  # 3-D (multimodal) rope, [S, W, hd]
        deepstack = vision.deepstack.to(embeds.dtype)
        width = input_ids.shape[1]

        def attend(i: int, q, k, v):
            out.keys[i][rows, :, :width] = k
            out.values[i][rows, :, :width] = v
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

        def add_deepstack(i: int, x: torch.Tensor) -> torch.Tensor:
            if i < deepstack.shape[0]:  # Qwen3-VL adds vision-tower features after the first layers
                x[video_mask] += deepstack[i]
            return x

        self.stack.run(embeds, cos, sin, attend, after_layer=add_deepstack)
        batch = torch.arange(len(prefixes), device=input_ids.device)
        out.next_pos[rows] = position_ids[0, batch, lengths - 1] + 1  # the prefix ends in text (<|vision_end|>)

    @property
    def stack(self) -> FusedQwen3Stack:
        """The SVLM text layers with fused weights, for the prefix and question passes (built on first use)."""
        if self._stack is None:
            lm = self.vlm.language_model
            self._stack = FusedQwen3Stack(lm.layers, lm.norm, self.config.text_config, self.compile_kernels)
        return self._stack

    @torch.inference_mode()
    def forward_cached(self, prefix: PrefixKV, question_ids: list[list[int]]) -> CompressorOutput:
        """The per-question pass against cached prefixes: [question | K memory tokens] per row.

        Rows may carry different questions of the same token length (callers group by length), so
        the new tokens need no padding; each row's positions continue from its own prefix (text
        positions, where Qwen3-VL's multimodal rotary embedding is the plain one). Runs on the fused
        stack: each layer attends over [prefix KV (padding masked) | new tokens (causal)].
        """
        device = self.memory.device
        stack = self.stack
        s, k, q = prefix.mask.shape[0], self.num_memory_tokens, len(question_ids[0])
        n = q + k
        ids = torch.tensor(question_ids, device=device)  # [S, Q]
        x = torch.cat([self.vlm.get_input_embeddings()(ids), self.memory.expand(s, -1, -1)], dim=1)  # [S, N, D_s]
        cos, sin = stack.rope(prefix.next_pos[:, None] + torch.arange(n, device=device)[None, :])
        causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        allowed = torch.cat([prefix.mask.bool()[:, None, :].expand(-1, n, -1), causal.expand(s, -1, -1)], dim=2)

        rep = stack.n_heads // stack.n_kv
        mask4 = allowed[:, None]  # [S, 1, N, P + N]

        def attend(i: int, q_, k_, v_):
            # [prefix | new] keys per row; SDPA's memory-efficient kernel takes the padding+causal mask
            # without materialising the scores (K/V are expanded to the query heads for it).
            keys = torch.cat([prefix.keys[i], k_], dim=2).repeat_interleave(rep, dim=1)  # [S, H, P + N, hd]
            values = torch.cat([prefix.values[i], v_], dim=2).repeat_interleave(rep, dim=1)
            with sdpa_kernel(CACHED_PASS_BACKENDS):
                return F.scaled_dot_product_attention(q_, keys, values, attn_mask=mask4)

        hidden = stack.run(x.to(stack.dtype), cos, sin, attend)  # [S, N, D_s]
        relevance = torch.sigmoid(hidden[:, q - 1].float() @ self.router)
        return CompressorOutput(features=hidden[:, q:], relevance=relevance)

    @torch.inference_mode()
    def forward(
        self,
        prompts: list[list[int]],
        vision: VisionFeatures,
        grid_thw: torch.Tensor,
        pad_id: int,
        video_pad_id: int,
    ) -> CompressorOutput:
        """Run every segment's prompt (prefix + question ids) as one right-padded batch (step 6-7).

        The memory tokens are written right after each row's real tokens, so position ids continue
        from the prompt and the padding to the right stays masked.
        """
        device = self.memory.device
        k = self.num_memory_tokens
        lengths = [len(p) for p in prompts]
        s = len(prompts)
        input_ids, _ = self._prompt_batch(prompts, max(lengths) + k, pad_id)
        mask = (torch.arange(input_ids.shape[1], device=device)[None, :]
                < torch.tensor(lengths, device=device)[:, None] + k).long()  # prompt + memory tokens
        embeds, video_mask = self._embed_with_vision(input_ids, vision, video_pad_id)
        token_type = (video_mask.long() * VIDEO_TOKEN_TYPE).int()
        rows = torch.arange(s, device=device)[:, None]
        mem_pos = torch.tensor(lengths, device=device)[:, None] + torch.arange(k, device=device)[None, :]  # [S, K]
        embeds[rows, mem_pos] = self.memory.to(embeds.dtype).expand(s, -1, -1)

        position_ids = self._rope_positions(input_ids, token_type, grid_thw, mask)
        hidden = self.vlm.language_model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            visual_pos_masks=video_mask,
            deepstack_visual_embeds=list(vision.deepstack.to(embeds.dtype)),
            use_cache=False,
        ).last_hidden_state  # [S, W, D_s]

        features = hidden[rows, mem_pos]  # [S, K, D_s]
        last = hidden[rows[:, 0], torch.tensor(lengths, device=device) - 1].float()  # [S, D_s]
        relevance = torch.sigmoid(last @ self.router)
        return CompressorOutput(features=features, relevance=relevance)
