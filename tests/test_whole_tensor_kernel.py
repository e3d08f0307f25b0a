"""Whole CPU tensors from the selected-draw kernel (``transforms.fill_run_``): torch's bytes.

The kernel makes a tensor's draws a block of the MT19937 state at a time; every size around the
624-word block and normal_'s 16-element blocks and tail, from streams at odd positions, must give
serial torch's bytes. Requests for small tensors take it wherever it passed its self-test.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load

from service.engine import chunked, mt19937, pieces, transforms
from tests.torch_reference import as_bytes

SIZES = [1, 2, 15, 16, 17, 31, 32, 623, 624, 625, 639, 640, 1247, 1248, 1249, 10007, 65536, 100003]
BASES = [0, 1, 5, 623, 624, 1001]
SERVED = sorted((op, str(dtype).removeprefix("torch.")) for op, dtype in transforms.SERVED)


def _serial(op: str, dtype: torch.dtype, n: int, seed: int, base: int, p1: float, p2: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    torch.empty(base, dtype=torch.int32).random_(generator=g)
    t = torch.empty(n, dtype=dtype)
    return t.uniform_(p1, p2, generator=g) if op == "uniform" else t.normal_(p1, p2, generator=g)


@pytest.mark.parametrize("op,dtype_name", SERVED)
@pytest.mark.parametrize("n", SIZES)
def test_whole_run_equals_serial_torch(op, dtype_name, n):
    dtype = getattr(torch, dtype_name)
    for seed, base in [(77, b) for b in BASES] + [(2**64 - 1, 3)]:
        out = torch.empty(n, dtype=dtype)
        done = transforms.fill_run_(out, op, -1.5, 2.25, mt19937.state_at(seed, base))
        if op == "normal" and n < 16:  # normal_distribution<double>: torch's path, not the kernel's
            assert done is False
            continue
        assert done is True
        want = _serial(op, dtype, n, seed, base, -1.5, 2.25)
        assert torch.equal(out.view(torch.uint8), want.view(torch.uint8)), (seed, base)


def test_kernel_refuses_what_it_does_not_serve():
    for op, dtype in [("normal", torch.float64), ("uniform", torch.float16), ("uniform", torch.bfloat16)]:
        out = torch.zeros(100, dtype=dtype)
        assert transforms.fill_run_(out, op, 0.0, 1.0, mt19937.state_at(0, 0)) is False
        assert not out.any()


@pytest.mark.parametrize(
    "init",
    [
        {"scheme": "kaiming_uniform"},
        {"scheme": "xavier_normal", "gain": 0.5},
        {"scheme": "normal", "mean": 3.0, "std": 0.01},
        {"scheme": "uniform", "a": -2.0, "b": 7.0},
    ],
    ids=lambda i: i["scheme"],
)
def test_small_request_takes_the_kernel_and_keeps_torchs_bytes(http, monkeypatch, init):
    if not chunked.selected_ok("uniform", torch.float32):
        pytest.skip("the selected-draw kernel is not available here")

    def torch_path_must_not_run(*args, **kwargs):
        raise AssertionError("a small float32 tensor took torch's element-by-element path")

    monkeypatch.setattr(pieces, "fill_serial_", torch_path_must_not_run)
    shape = [256, 784]
    r = http.post("/v1/tensor", json={"shape": shape, "init": init, "seed": 11, "device": "cpu"})
    assert r.status_code == 200, r.text
    torch.manual_seed(11)
    want = torch.empty(shape)
    params = {k: v for k, v in init.items() if k != "scheme"}
    getattr(torch.nn.init, init["scheme"] + "_")(want, **params)
    assert as_bytes(load(r.content)["weight"]) == as_bytes(want)
