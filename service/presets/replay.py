"""Run a preset: on ``meta`` to plan (keys and shapes, nothing allocated, nothing drawn), and on the
CPU under the seeded global generators to make the real state_dict.

Construction happens inside ``engine.global_rng.seeded_global_rng``: torch's layer constructors
draw from the global generators and nothing else, and that section seeds them as
``torch.manual_seed(seed)`` does, for this build alone, restoring them afterwards.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


# A normal draw never lands further than this many stds from its mean (as ``engine/checks.py``
# rules for /v1/tensor: Box-Muller on 53-bit uniforms reaches about 8.57).
NORMAL_REACH_STDS = 10.0

_aten = torch.ops.aten


@dataclass(frozen=True)
class Reach:
    """The widest values a build writes with a scalar (``fill_``, ``full``, ``uniform_``,
    ``normal_``) into a floating tensor: ``low``..``high``, and the widest range one op spans.
    ``None`` bounds: nothing was written that way."""

    low: float = 0.0
    high: float = 0.0
    width: float = 0.0

    def widen(self, low: float, high: float) -> Reach:
        return Reach(min(self.low, low), max(self.high, high), max(self.width, high - low))

    def fits(self, dtype: torch.dtype) -> bool:
        biggest = torch.finfo(dtype).max
        return -biggest <= self.low and self.high <= biggest and self.width <= biggest


class _ReachWatch(TorchDispatchMode):
    """Sees every scalar a build writes into a floating tensor on ``meta`` (where torch checks
    nothing: ``fill_(1e39)`` on a float32 CPU tensor raises, ``normal_(0, 1e300)`` makes ``inf``)."""

    def __init__(self) -> None:
        super().__init__()
        self.reach = Reach()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            self._see(func, args, kwargs)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass  # an argument form not watched: torch checks it itself
        return func(*args, **kwargs)

    def _see(self, func: Any, args: tuple, kwargs: dict) -> None:
        if func in (_aten.fill_.Scalar, _aten.full.default):
            target_dtype = args[0].dtype if func is _aten.fill_.Scalar else kwargs.get("dtype") or torch.get_default_dtype()
            value = args[1]
            if _floating(target_dtype) and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._add(float(value), float(value))
        elif func is _aten.uniform_.default and _floating(args[0].dtype):
            a = float(args[1] if len(args) > 1 else kwargs.get("from", 0.0))
            b = float(args[2] if len(args) > 2 else kwargs.get("to", 1.0))
            self._add(min(a, b), max(a, b))
        elif func is _aten.normal_.default and _floating(args[0].dtype):
            mean = float(args[1] if len(args) > 1 else kwargs.get("mean", 0.0))
            std = float(args[2] if len(args) > 2 else kwargs.get("std", 1.0))
            self._add(mean - NORMAL_REACH_STDS * abs(std), mean + NORMAL_REACH_STDS * abs(std))

    def _add(self, low: float, high: float) -> None:
        if math.isnan(low) or math.isnan(high):
            low, high = -math.inf, math.inf
        self.reach = self.reach.widen(low, high)


def _floating(dtype: Any) -> bool:
    return isinstance(dtype, torch.dtype) and dtype.is_floating_point


@functools.lru_cache(maxsize=64)
def _meta_build(preset: Preset, config_json: str, budget: int) -> tuple[tuple[PresetEntry, ...], Reach]:
    config = json.loads(config_json)
    _install_hooks()
    _budget.left, _budget.limit = budget, budget
    watch = _ReachWatch()
    try:
        with captured_warnings(), torch.device("meta"), torch.no_grad(), watch:
            module = preset.build(config)
    finally:
        _budget.left = None
    return tuple(entries_of(module)), watch.reach


def meta_entries(preset: Preset, config: Mapping[str, Any], budget: int = 1 << 20) -> list[PresetEntry]:
    """The state_dict entries ``preset`` makes for a resolved ``config``, from a build on ``meta``
    (no memory, no draws). A build that registers more than ``budget`` tensors (re-registrations
    such as tying count too) stops early with ``TooManyTensors``, so a config with a million layers
    costs no more than the limit it breaks."""
    return list(_meta_build(preset, _frozen(config), budget)[0])


def meta_reach(preset: Preset, config: Mapping[str, Any], budget: int = 1 << 20) -> Reach:
    """What the build of ``config`` writes with scalars into floating tensors (see ``Reach``),
    from the same build on ``meta`` as ``meta_entries`` (cached together)."""
    return _meta_build(preset, _frozen(config), budget)[1]


def replay(preset: Preset, config: Mapping[str, Any], seed: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``torch.manual_seed(seed); Reference(**config).state_dict()`` on the CPU, and torch's warnings."""
    with seeded_global_rng(seed, torch.device("cpu")), captured_warnings() as warned, torch.no_grad():
        with torch.device("cpu"):
            module = preset.build(config)
    return module.state_dict(), warned
