"""The recommended gain of a nonlinearity, as ``torch.nn.init.calculate_gain``.

The table is ``service.formulas``' (torch-free, shared with the portable-v1 core and the client
distribution); the engine's modules import it from here.
"""

from __future__ import annotations

from service.formulas import LEAKY_RELU_DEFAULT_SLOPE, NONLINEARITIES, calculate_gain, torch_nonlinearity

__all__ = ["LEAKY_RELU_DEFAULT_SLOPE", "NONLINEARITIES", "calculate_gain", "torch_nonlinearity"]
