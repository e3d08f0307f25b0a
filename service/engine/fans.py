"""Fan-in, fan-out and receptive field of a weight shape, as torch computes them.

The formulas are ``service.formulas``' (torch-free, shared with the portable-v1 core and the
client distribution); the engine's modules import them from here.
"""

from __future__ import annotations

from service.formulas import FAN_MODES, FanMode, Fans, compute_fans

__all__ = ["FAN_MODES", "FanMode", "Fans", "compute_fans"]
