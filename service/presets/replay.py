"""Run a preset: on ``meta`` to plan (keys and shapes, nothing allocated, nothing drawn), and on the
CPU under the seeded global generators to make the real state_dict.

Construction happens inside ``engine.global_rng.seeded_global_rng``: torch's layer constructors
draw from the global generators and nothing else, and that section seeds them as
``torch.manual_seed(seed)`` does, for this build alone, restoring them afterwards.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from typing import Any

import torch

from service.engine.global_rng import seeded_global_rng
from service.engine.maker import captured_warnings
from service.presets.base import Preset, PresetEntry, entries_of


class TooManyTensors(Exception):
    """A planning build registered more tensors than it may (``budget``): a config far over the limits."""

    def __init__(self, budget: int):
        self.budget = budget
        super().__init__(f"the model registers more than {budget} parameters and buffers")


_budget = threading.local()
_hooks_installed = threading.Lock()
_hooked = False


def _count_registration(module: Any, name: str, tensor: Any) -> None:
    """torch's module registration hook: counts against this thread's planning budget, if any."""
    left = getattr(_budget, "left", None)
    if left is not None:
        if left <= 0:
            raise TooManyTensors(_budget.limit)
        _budget.left = left - 1


def _install_hooks() -> None:
    """Count parameter and buffer registrations (global hooks; they only count on a thread whose
    planning build set a budget, and cost one attribute lookup elsewhere)."""
    global _hooked
    with _hooks_installed:
        if not _hooked:
            torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)
            torch.nn.modules.module.register_module_buffer_registration_hook(_count_registration)
            _hooked = True


def _frozen(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@functools.lru_cache(maxsize=64)
def _meta_entries(preset: Preset, config_json: str, budget: int) -> tuple[PresetEntry, ...]:
    config = json.loads(config_json)
    _install_hooks()
    _budget.left, _budget.limit = budget, budget
    try:
        with captured_warnings(), torch.device("meta"), torch.no_grad():
            module = preset.build(config)
    finally:
        _budget.left = None
    return tuple(entries_of(module))


def meta_entries(preset: Preset, config: Mapping[str, Any], budget: int = 1 << 20) -> list[PresetEntry]:
    """The state_dict entries ``preset`` makes for a resolved ``config``, from a build on ``meta``
    (no memory, no draws). A build that registers more than ``budget`` tensors (re-registrations
    such as tying count too) stops early with ``TooManyTensors``, so a config with a million layers
    costs no more than the limit it breaks."""
    return list(_meta_entries(preset, _frozen(config), budget))


def replay(preset: Preset, config: Mapping[str, Any], seed: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``torch.manual_seed(seed); Reference(**config).state_dict()`` on the CPU, and torch's warnings."""
    with seeded_global_rng(seed, torch.device("cpu")), captured_warnings() as warned, torch.no_grad():
        with torch.device("cpu"):
            module = preset.build(config)
    return module.state_dict(), warned
