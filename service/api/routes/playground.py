"""``GET /``: the playground page (static files inside the package)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["playground"])
