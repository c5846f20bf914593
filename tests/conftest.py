from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "fixtures" / "golden"


def golden_case(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((GOLDEN / "cases" / f"{name}.json").read_text())
    arrays = dict(np.load(GOLDEN / "cases" / f"{name}.npz"))
    return meta, arrays


GOLDEN_CASES = [c["name"] for c in json.loads((GOLDEN / "cases" / "cases.json").read_text())]


@pytest.fixture(scope="session")
def tiny_pipeline():
    from models.tempo import TempoPipeline

    return TempoPipeline.from_pretrained(device="cpu")
