"""nanogpt/GPT: placeholder until its replay lands."""

from __future__ import annotations

from service.presets.base import Preset


def _build(config):
    raise NotImplementedError("nanogpt/GPT")


PRESET = Preset(name="nanogpt/GPT", library="nanogpt", reference="", versions="", fields=(), build=_build)
