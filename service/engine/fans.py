"""Fan-in, fan-out and receptive field of a weight shape.

Mirrors ``torch.nn.init._calculate_fan_in_and_fan_out`` for the weight layout
``[out_channels, in_channels, *kernel]``::

    receptive_field = prod(shape[2:])
    fan_in  = shape[1] * receptive_field
    fan_out = shape[0] * receptive_field

Plain Python (no torch), so ``/v1/fans``, the stats and the torch-free portable client share it;
``tests/test_fans_and_gains.py`` pins it against torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FanMode = Literal["fan_in", "fan_out"]
FAN_MODES: tuple[str, ...] = ("fan_in", "fan_out")


@dataclass(frozen=True)
class Fans:
    fan_in: int
    fan_out: int
    receptive_field: int

    def by_mode(self, mode: str) -> int:
        """``fan_in`` or ``fan_out`` by name, as ``torch.nn.init._calculate_correct_fan``."""
        if mode == "fan_in":
            return self.fan_in
        if mode == "fan_out":
            return self.fan_out
        raise ValueError(f"mode must be one of {list(FAN_MODES)}, but got mode={mode!r}")


def compute_fans(shape: Sequence[int]) -> Fans:
    """Fans of a weight of ``shape`` (at least 2-D), as torch computes them."""
    if len(shape) < 2:
        raise ValueError(
            f"fans need a shape with at least 2 dimensions; got {len(shape)}-D shape {list(shape)}"
        )
    receptive_field = math.prod(shape[2:])
    return Fans(
        fan_in=shape[1] * receptive_field,
        fan_out=shape[0] * receptive_field,
        receptive_field=receptive_field,
    )
