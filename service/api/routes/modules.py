"""``/v1/module`` and ``/v1/layers``: whole ``torch.nn`` stacks with PyTorch's default init."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["modules"])
