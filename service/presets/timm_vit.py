"""timm/VisionTransformer: placeholder until its replay lands."""

from __future__ import annotations

from service.presets.base import Preset


def _build(config):
    raise NotImplementedError("timm/VisionTransformer")


PRESET = Preset(name="timm/VisionTransformer", library="timm", reference="", versions="", fields=(), build=_build)
