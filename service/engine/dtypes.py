"""The dtypes the engine knows: one row each, and the lookups every torch-side module reads.

A row names the dtype as docs/api.md does, its torch dtype, its safetensors code, its size in
bytes and whether it is a float the service serves (a request's ``dtype``). The other rows are
the dtypes of buffers a module or preset holds (BatchNorm's ``num_batches_tracked`` is int64).

The torch-free sides keep their own numpy tables (``service.portable.transforms.DTYPES``,
``service.client._safetensors.DTYPES``: they install without torch); tests/test_dtype_tables.py
pins them to this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DType:
    name: str
    torch: torch.dtype
    safetensors: str
    itemsize: int
    served: bool


TABLE: tuple[DType, ...] = (
    DType("float16", torch.float16, "F16", 2, True),
    DType("bfloat16", torch.bfloat16, "BF16", 2, True),
    DType("float32", torch.float32, "F32", 4, True),
    DType("float64", torch.float64, "F64", 8, True),
    DType("int64", torch.int64, "I64", 8, False),
    DType("bool", torch.bool, "BOOL", 1, False),
)

# The served floats, name -> torch dtype, in docs/api.md's order.
SERVED: dict[str, torch.dtype] = {row.name: row.torch for row in TABLE if row.served}
SERVED_TORCH: tuple[torch.dtype, ...] = tuple(SERVED.values())
# Every row: torch dtype -> name, name -> safetensors code.
NAMES: dict[torch.dtype, str] = {row.torch: row.name for row in TABLE}
SAFETENSORS: dict[str, str] = {row.name: row.safetensors for row in TABLE}
# float16/bfloat16: torch kernels some schemes lack run in float32 for them.
REDUCED: frozenset[str] = frozenset(row.name for row in TABLE if row.served and row.itemsize == 2)
