"""Model presets: well-known architectures' from-scratch ``state_dict``s, replayed in pure torch.

``PRESETS`` is the one table of presets, by their public name (``docs/api.md``, model presets).
Each entry is a module of this package with one ``Preset``; adding an architecture means adding
one such module and one line here. Nothing from a request is imported or looked up by name
outside this table.
"""

from __future__ import annotations

from service.presets import bert, gpt2, llama, nanogpt, resnet, timm_vit, vit
from service.presets.base import ConfigError, Field, InitRule, Preset, PresetEntry

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        gpt2.PRESET,
        bert.PRESET,
        llama.PRESET,
        vit.PRESET,
        timm_vit.PRESET,
        nanogpt.PRESET,
        resnet.RESNET18,
        resnet.RESNET50,
    )
}

__all__ = ["PRESETS", "ConfigError", "Field", "InitRule", "Preset", "PresetEntry"]
