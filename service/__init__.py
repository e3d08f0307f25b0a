"""initsvc: initialized neural-network weights over HTTP, bit-identical to ``torch.nn.init``."""

__version__ = "0.1.0"

# orthogonal_'s QR runs in MKL, whose results depend on the CPU's code path unless conditional
# numerical reproducibility is pinned; MKL reads this once, so it must be set before torch loads.
# Importing the package is the one step every entry point (uvicorn, CLI, tests) shares.
import os as _os

_os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
