"""The mm_projector (``mlp2x_gelu``): compressor features [*, D_s] -> LLM embeddings [*, D_l].

Checkpoint layout: model.mm_projector.0.{weight,bias} (Linear D_s->D_l), model.mm_projector.2.* (Linear D_l->D_l);
index 1 is the exact (erf) GELU, which has no weights.
"""

from __future__ import annotations

from torch import nn

from models.checkpoint import CheckpointReader

CHECKPOINT_PREFIX = "model.mm_projector."


class Projector(nn.Sequential):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(nn.Linear(in_features, out_features), nn.GELU(), nn.Linear(out_features, out_features))

    def load_checkpoint(self, reader: CheckpointReader) -> None:
        self.load_state_dict(reader.read_prefix(CHECKPOINT_PREFIX, self[0].weight.dtype), strict=True)
