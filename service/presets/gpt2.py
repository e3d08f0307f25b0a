"""transformers/GPT2LMHeadModel: placeholder until its replay lands."""

from __future__ import annotations

from service.presets.base import Preset


def _build(config):
    raise NotImplementedError("transformers/GPT2LMHeadModel")


PRESET = Preset(name="transformers/GPT2LMHeadModel", library="transformers", reference="", versions="", fields=(), build=_build)
