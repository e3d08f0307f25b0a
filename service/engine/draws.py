"""Draw accounting of torch's CPU ``uniform_`` and ``normal_``: which 32-bit draws make element i.

Read from ATen ``native/cpu/DistributionTemplates.h`` (torch 2.13) and measured on this host
(the contract it serves: ``docs/api.md`` §3; ``tests/test_parallel_generation.py`` pins it).
d = ``draws_per_element``: 2 for float64 (``random64``: first draw = high half), 1 for float32 and
for float16/bfloat16, which draw in float and cast.

* ``uniform_(a, b)``: element i comes from draws [d·i, d·i + d); n elements take d·n draws.
  Per element arithmetic (fp16/bf16 clamp ``value == b`` to ``a``), so any split is exact.
* ``normal_(mean, std)``, contiguous, n >= 16 (``normal_fill``): uniforms for 16-element blocks,
  Box–Muller on pairs (j, j+8) of each block. If n % 16 != 0 the last 16 elements [n-16, n) are
  redrawn from 16 fresh uniforms and overwrite what was there.
  float32/float64 first draw all n uniforms: d·n + 16·d·[n % 16 != 0] draws in all.
  float16/bfloat16 draw only the full blocks: 16·floor(n/16) + 16·[n % 16 != 0] = 16·ceil(n/16).
* ``normal_`` with n < 16 (or non-contiguous) uses ``normal_distribution<double>``: two
  ``random64`` per pair of values, the second cached in the generator; 4·ceil(n/2) draws, and an odd
  n leaves the double-normal cache set.

e.g. n = 1001: uniform_ f32 1001, f64 2002; normal_ f32 1017, f64 2034, f16/bf16 1008.
n = 10: normal_ 20 draws for every dtype.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from service.engine.dtypes import SERVED_TORCH

Op = Literal["uniform", "normal"]
OPS: tuple[Op, ...] = ("uniform", "normal")
DTYPES = SERVED_TORCH
BLOCK = 16  # normal_fill's Box–Muller block: 8 pairs (j, j + 8)

# Seconds per element of torch's serial uniform_/normal_ on a pre-touched float32 tensor (2.1 and
# 2.6 ns measured on a 2-core EPYC); only its ratio to mt19937.PASS_S matters: it prices a jump
# against generating elements, to balance chunks and to choose where a slice starts generating.
ELEMENT_S = 2.2e-9


def check_op_dtype(op: str, dtype: torch.dtype) -> None:
    """Raise ``ValueError`` naming the allowed values unless (op, dtype) is served."""
    if op not in OPS:
        raise ValueError(f"op must be one of {list(OPS)}; got op={op!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {[str(d) for d in DTYPES]}; got dtype={dtype}")


def draws_per_element(dtype: torch.dtype) -> int:
    """32-bit draws per uniform: 2 for float64 (``random64``), 1 for float32/float16/bfloat16."""
    return 2 if dtype == torch.float64 else 1


def draws_consumed(op: Op, dtype: torch.dtype, n: int) -> int:
    """Draws torch's serial ``op`` takes for n contiguous elements (no cached normal on entry)."""
    check_op_dtype(op, dtype)
    d = draws_per_element(dtype)
    if op == "uniform":
        return d * n
    if n < BLOCK:
        return 4 * math.ceil(n / 2)
    tail = BLOCK if n % BLOCK else 0
    if dtype in (torch.float32, torch.float64):
        return d * (n + tail)
    return BLOCK * (n // BLOCK) + tail


def generation_range(op: Op, n: int, a: int, b: int) -> tuple[int, int]:
    """The elements [s, e) to generate, from draw d·s, so that they hold ``full[a:b]`` exactly.

    uniform_: [a, b). normal_ (n >= 16): round a down and b up to multiples of 16 (whole blocks);
    if n % 16 != 0 and b > n - 16 the tail is wanted, so generate [16·floor(min(a, n-16)/16), n):
    that chunk has >= 16 elements and the same n % 16, so torch's own tail rule recomputes
    [n-16, n) from the same draws as in the full tensor.
    """
    if op == "uniform":
        return a, b
    s, e = a - a % BLOCK, min(n, -(-b // BLOCK) * BLOCK)
    if n % BLOCK and b > n - BLOCK:
        s, e = min(s, (n - BLOCK) - (n - BLOCK) % BLOCK), n
    return s, e


def fill_serial_(t: torch.Tensor, op: Op, p1: float, p2: float, g: torch.Generator) -> torch.Tensor:
    """``t.uniform_(p1, p2)`` or ``t.normal_(p1, p2)`` with ``g``: the op every chunk runs."""
    if op == "uniform":
        return t.uniform_(p1, p2, generator=g)
    return t.normal_(p1, p2, generator=g)


# 32-bit draws of one pair of ``normal_distribution<double>`` values (two ``random64`` uniforms).
PAIR_DRAWS = 4


def uses_double_normal(n: int, contiguous: bool) -> bool:
    """Whether ``normal_`` on n elements takes the ``normal_distribution<double>`` path (n < 16 or
    non-contiguous, every dtype), whose draws depend on the generator's cached double normal."""
    return n > 0 and (n < BLOCK or not contiguous)


def double_normal_draws(n: int, cached: bool) -> tuple[int, bool]:
    """(draws, cached afterwards) of ``normal_`` on n elements on the ``normal_distribution<double>``
    path, entered with (``cached``) or without a cached value.

    Element by element: a cached value is used first (no draw) and cleared; otherwise a pair takes
    4 draws, gives r·cos θ and caches r·sin θ (unscaled: the next element scales it by its own
    mean and std). So p = ceil((n - c)/2) pairs, and a value stays cached iff n - c is odd; the
    last pair, if any, starts at draw 4·(p - 1).
    """
    if n <= 0:
        return 0, cached
    rest = n - int(cached)
    return PAIR_DRAWS * (-(-rest // 2)), rest % 2 == 1


def fill_draws(op: Op, dtype: torch.dtype, n: int, contiguous: bool, cached: bool) -> tuple[int, bool]:
    """(draws, cached afterwards) of ``uniform_``/``normal_`` on a tensor of n elements, in any layout
    (``uniform_`` fills in memory order at ``draws_per_element`` each; ``normal_`` as
    :func:`draws_consumed` when contiguous with n >= 16, else :func:`double_normal_draws`)."""
    check_op_dtype(op, dtype)
    if op == "normal" and uses_double_normal(n, contiguous):
        return double_normal_draws(n, cached)
    return draws_consumed(op, dtype, n), cached
