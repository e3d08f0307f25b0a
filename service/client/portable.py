"""portable-v1 weights made offline, without the service and without torch (numpy only).

The same bits the service returns for ``rng: "portable-v1"``, from the same code it runs. The
arguments come in ``client.tensor``'s order, shape first, then the recipe::

    from service.client.portable import generate
    w = generate([256, 784], "kaiming_uniform", seed=0)                     # float32 ndarray
    w = generate([256, 784], {"scheme": "kaiming_uniform", "a": 0.0}, seed=0)  # or the recipe as a dict
    shard = generate([50257, 768], "normal", std=0.02, seed=0, tid=3,
                     dtype="bfloat16", slice="0:12565,:")                   # uint16 bf16 bits

The numpy core is ``service.portable``; the algorithm is written up in ``docs/portable-v1.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from service.client._requests import normalize_shape, normalize_slice, recipe
from service.portable import (
    PortableError,
    PortablePlan,
    PortableRecipeError,
    PortableUnsupportedError,
    PortableWindowError,
    resolve_recipe,
)
from service.portable import generate as _generate

__all__ = [
    "PortableError",
    "PortablePlan",
    "PortableRecipeError",
    "PortableUnsupportedError",
    "PortableWindowError",
    "generate",
    "resolve_recipe",
]


def generate(
    shape: Any,
    scheme: str | Mapping[str, Any],
    seed: int,
    tid: int = 0,
    dtype: str = "float32",
    slice: Any = None,  # shadows the builtin: the request's name
    **params: Any,
) -> Any:
    """The portable-v1 tensor ``client.tensor(shape, scheme, seed=seed, rng="portable-v1", ...)``
    returns, made here: a numpy array (bfloat16 as uint16 bit patterns, see ``service.portable``).

    ``scheme`` is a scheme name with its parameters as keyword arguments, or the whole recipe as a
    dict (``{"scheme": "normal", "std": 0.02}``). ``tid`` is the tensor's index in a
    ``/v1/tensors`` request. ``slice`` takes what ``client.tensor`` takes: ``"0:128,:"``,
    ``[[0, 128], None]`` or Python slices. The old order ``generate(recipe, shape, seed)`` still
    works, with a ``DeprecationWarning``.
    """
    if isinstance(shape, Mapping):
        warnings.warn("generate(recipe, shape, seed) is deprecated: pass the shape first, "
                      "generate(shape, recipe, seed), as client.tensor(shape, scheme, ...) takes them",
                      DeprecationWarning, stacklevel=2)
        shape, scheme = scheme, shape
    dims = normalize_shape(shape)
    init = recipe(None, scheme, params) if isinstance(scheme, Mapping) else recipe(scheme, None, params)
    bounds = None
    if slice is not None:
        bounds = [None if b is None else (b[0], b[1]) for b in normalize_slice(slice, dims)]
    return _generate(init, dims, seed, tid, dtype, bounds)
