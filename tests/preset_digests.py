"""The reference digests of the model presets (``data/preset-reference-digests.json``), computed
by the real libraries (transformers 5.25.0, timm 1.0.31, torchvision 0.28.0, nanoGPT's ``model.py``)
on torch 2.13.0, and the digest function they use. The file's ``environment`` names the versions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

DIGESTS = Path(__file__).resolve().parent / "data" / "preset-reference-digests.json"


def load_cases() -> list[dict]:
    if not DIGESTS.exists():
        return []
    return json.loads(DIGESTS.read_text())["cases"]


CASES = load_cases()


def cases_for(*models: str) -> list:
    """pytest params of the digest cases of ``models`` (all when none given), ids from the file."""
    chosen = [c for c in CASES if not models or c["model"] in models]
    if not chosen:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no reference digests at {DIGESTS}"))]
    return [pytest.param(c, id=c["id"]) for c in chosen]


def digest(t: torch.Tensor) -> str:
    """sha256 of the tensor's contiguous little-endian bytes (the file's own definition)."""
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
