"""Run a preset: on ``meta`` to plan (keys and shapes, nothing allocated, nothing drawn), and on the
CPU under the seeded global generators to make the real state_dict.

Construction happens inside ``engine.global_rng.seeded_global_rng``: torch's layer constructors
draw from the global generators and nothing else, and that section seeds them as
``torch.manual_seed(seed)`` does, for this build alone, restoring them afterwards.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import torch

from service.engine.global_rng import seeded_global_rng
from service.engine.maker import captured_warnings
from service.presets.base import Preset, PresetEntry, entries_of


def _frozen(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@functools.lru_cache(maxsize=64)
def _meta_entries(preset: Preset, config_json: str) -> tuple[PresetEntry, ...]:
    config = json.loads(config_json)
    with captured_warnings(), torch.device("meta"), torch.no_grad():
        module = preset.build(config)
    return tuple(entries_of(module))


def meta_entries(preset: Preset, config: Mapping[str, Any]) -> list[PresetEntry]:
    """The state_dict entries ``preset`` makes for a resolved ``config``, from a build on ``meta``."""
    return list(_meta_entries(preset, _frozen(config)))


def replay(preset: Preset, config: Mapping[str, Any], seed: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``torch.manual_seed(seed); Reference(**config).state_dict()`` on the CPU, and torch's warnings."""
    with seeded_global_rng(seed, torch.device("cpu")), captured_warnings() as warned, torch.no_grad():
        with torch.device("cpu"):
            module = preset.build(config)
    return module.state_dict(), warned
