"""The torch-free numpy dtype tables agree with the engine's one table (service/engine/dtypes.py).

``service.portable`` and ``service.client`` install without torch, so they keep numpy tables of
their own; these tests pin every row of theirs that the engine also knows.
"""

from __future__ import annotations

import numpy as np
import torch

from service.client import _safetensors
from service.engine import draws, dtypes, portable, rng
from service.portable import transforms


def test_engine_table_matches_torch():
    for row in dtypes.TABLE:
        assert row.torch == getattr(torch, row.name)
        assert row.itemsize == row.torch.itemsize
        assert row.served == (row.torch.is_floating_point and row.name in ("float16", "bfloat16", "float32", "float64"))


def test_engine_lookups_read_the_table():
    assert rng.DTYPES == {
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
        "float32": torch.float32,
        "float64": torch.float64,
    }
    assert set(draws.DTYPES) == set(portable.DTYPES) == set(rng.DTYPES.values())
    assert rng.SAFETENSORS_DTYPES["bfloat16"] == "BF16" and rng.SAFETENSORS_DTYPES["int64"] == "I64"
    assert {dtypes.NAMES[t]: t for t in rng.DTYPES.values()} == rng.DTYPES
    assert rng.REDUCED_DTYPES == {"float16", "bfloat16"}


def test_portable_numpy_table_pinned():
    """portable-v1 makes exactly the served floats; bfloat16 as uint16 bit patterns."""
    served = {row.name: row for row in dtypes.TABLE if row.served}
    assert set(transforms.DTYPES) == set(served)
    for name, np_type in transforms.DTYPES.items():
        assert np.dtype(np_type).itemsize == served[name].itemsize
        if name != "bfloat16":
            assert np.dtype(np_type) == np.dtype(name)
    assert transforms.DTYPES["bfloat16"] is np.uint16


def test_client_safetensors_table_pinned():
    """Every engine row decodes in the client: same safetensors code, name and item size."""
    for row in dtypes.TABLE:
        name, code = _safetensors.DTYPES[row.safetensors]
        assert name == row.name
        assert np.dtype(code).itemsize == row.itemsize
        assert np.dtype(code).byteorder in ("<", "|", "=")
        if row.name != "bfloat16":
            assert np.dtype(code) == np.dtype(row.name).newbyteorder("<")
    # The client's extra integer codes name torch dtypes of their size.
    for st, (name, code) in _safetensors.DTYPES.items():
        assert getattr(torch, name).itemsize == np.dtype(code).itemsize, st
