"""transformers/ViTModel: placeholder until its replay lands."""

from __future__ import annotations

from service.presets.base import Preset


def _build(config):
    raise NotImplementedError("transformers/ViTModel")


PRESET = Preset(name="transformers/ViTModel", library="transformers", reference="", versions="", fields=(), build=_build)
