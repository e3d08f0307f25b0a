"""portable-v1: Philox4x32-10 weights that are the same bits on every device and in any client.

numpy only (no torch), so the service's engine and torch-free clients import the same code.
``generate(recipe, shape, seed, tid, dtype, slice)`` makes a tensor; the algorithm, its
constants and test vectors are in ``docs/portable-v1.md``.
"""

from service.portable.generate import generate
from service.portable.recipes import (
    PortableError,
    PortablePlan,
    PortableRecipeError,
    PortableUnsupportedError,
    PortableWindowError,
    resolve_recipe,
)

__all__ = [
    "PortableError",
    "PortablePlan",
    "PortableRecipeError",
    "PortableUnsupportedError",
    "PortableWindowError",
    "generate",
    "resolve_recipe",
]
