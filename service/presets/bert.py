"""transformers/BertModel: placeholder until its replay lands."""

from __future__ import annotations

from service.presets.base import Preset


def _build(config):
    raise NotImplementedError("transformers/BertModel")


PRESET = Preset(name="transformers/BertModel", library="transformers", reference="", versions="", fields=(), build=_build)
