"""Reading tensors from safetensors checkpoints (single file or sharded with an index), nothing else.

How the tensors map onto modules lives beside each module (``compressor.py``, ``llm.py``,
``projector.py``); this file only finds and reads them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open

from models.errors import CheckpointError


def _shards(directory: Path) -> dict[str, Path]:
    """Map every tensor name to the safetensors file that holds it."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: directory / shard for name, shard in weight_map.items()}
    single = directory / "model.safetensors"
    if not single.is_file():
        raise CheckpointError(f"no model.safetensors or model.safetensors.index.json in {directory}")
    with safe_open(str(single), framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


class CheckpointReader:
    """Lazy access to the tensors of one checkpoint directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._where = _shards(directory)

    def names(self, prefix: str = "") -> list[str]:
        return [n for n in self._where if n.startswith(prefix)]

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def read(self, names: list[str], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        by_file: dict[Path, list[str]] = {}
        for name in names:
            if name not in self._where:
                raise CheckpointError(f"tensor {name} missing from checkpoint {self.directory}")
            by_file.setdefault(self._where[name], []).append(name)
        out: dict[str, torch.Tensor] = {}
        for path, file_names in by_file.items():
            with safe_open(str(path), framework="pt") as f:
                for name in file_names:
                    t = f.get_tensor(name)
                    out[name] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
        return out

    def read_prefix(self, prefix: str, dtype: torch.dtype | None = None, strip: bool = True) -> dict[str, torch.Tensor]:
        tensors = self.read(self.names(prefix), dtype)
        return {(k[len(prefix):] if strip else k): v for k, v in tensors.items()}


def checkpoint_revision(*directories: Path) -> str:
    """A short, stable identity of the weights: file names and sizes, configs, safetensors headers.

    Part of every segment-cache key, so a new checkpoint never reads entries of an old one.
    """
    h = hashlib.sha256()
    for directory in directories:
        for path in sorted(directory.iterdir()):
            if path.suffix in {".safetensors", ".json"}:
                st = path.stat()
                h.update(f"{path.name}:{st.st_size}".encode())
                with path.open("rb") as f:
                    # whole JSON files; for safetensors the header (names, shapes, offsets), capped
                    h.update(f.read(st.st_size if path.suffix == ".json" else 1 << 20))
    return h.hexdigest()[:16]
