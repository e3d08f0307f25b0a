"""transformers/LlamaForCausalLM: placeholder until its replay lands."""

from __future__ import annotations

from service.presets.base import Preset


def _build(config):
    raise NotImplementedError("transformers/LlamaForCausalLM")


PRESET = Preset(name="transformers/LlamaForCausalLM", library="transformers", reference="", versions="", fields=(), build=_build)
