"""Shards of inner dimensions (column slices, 2-D blocks, inner slices of 3-D+ tensors) made by the
selected-draw kernel (``service/engine/transforms.py``): bit-identical to the same cut of torch's
own whole tensor, in the engine and over HTTP, and exact on the torch path where the kernel is off."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load

from service.codec.header import decode_header
from service.engine import chunked, transforms
from service.engine.draws import fill_serial_
from service.engine.slices import plan_runs
from tests.torch_reference import as_bytes, reference

SEEDS = [0, 2**32 + 1, 2**64 - 1]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
CUTS = [
    pytest.param((64, 1000), [(0, 64), (125, 250)], id="column-1/8"),
    pytest.param((64, 1000), [(10, 17), (0, 1000)], id="rows"),
    pytest.param((37, 53), [(3, 30), (5, 47)], id="block-odd"),
    pytest.param((100, 999), [(90, 100), (900, 999)], id="block-with-tail"),
    pytest.param((6, 7, 9, 11), [(0, 6), (2, 6), (1, 8), (3, 4)], id="4d-inner"),
    pytest.param((5, 40, 33), [(0, 5), (0, 40), (16, 32)], id="3d-last-dim"),
    pytest.param((17, 3), [(0, 17), (1, 2)], id="small-n%16"),
    pytest.param((3, 5), [(0, 3), (2, 4)], id="tiny"),
    pytest.param((2, 8), [(0, 2), (3, 8)], id="n=16"),
]


def _serial(op, dtype, shape, seed, base, p1, p2):
    g = torch.Generator().manual_seed(seed)
    torch.empty(base, dtype=torch.int32).random_(generator=g)
    return fill_serial_(torch.empty(shape, dtype=dtype), op, p1, p2, g)


def _same(got, want, what):
    assert got.shape == want.shape, what
    assert torch.equal(got.contiguous().view(torch.uint8), want.contiguous().view(torch.uint8)), what


@pytest.fixture
def kernel_must_serve(monkeypatch):
    """Where the kernel serves (op, dtype), the torch run filler must not run."""

    def guard(op, dtype, n):
        if chunked.selected_ok(op, dtype) and not (op == "normal" and n < 16):
            monkeypatch.setattr(chunked, "fill_runs", _must_not_run)

    return guard


def _must_not_run(*args, **kwargs):
    raise AssertionError("the torch path ran where the selected-draw kernel serves")


def test_kernel_is_built_and_passes_its_self_test_here():
    assert transforms.unavailable_reason() is None
    assert chunked.selected_self_test() == {"uniform/float32": True, "uniform/float64": True, "normal/float32": True}
    capability = chunked.capability()
    assert capability["selected_draws"] == ["normal/float32", "uniform/float32", "uniform/float64"]
    assert capability["selected_draws_failed"] == [] and capability["selected_draws_unavailable"] is None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("op,p1,p2", [("uniform", -0.3, 0.3), ("normal", 0.25, 3.5)], ids=["uniform", "normal"])
@pytest.mark.parametrize("shape,bounds", CUTS)
def test_engine_shard_equals_the_cut_of_serial_torch(kernel_must_serve, shape, bounds, op, p1, p2, dtype):
    n = int(np.prod(shape))
    kernel_must_serve(op, dtype, n)
    for seed in SEEDS:
        for base in (0, 1001):
            full = _serial(op, dtype, shape, seed, base, p1, p2)
            out = torch.empty([e - s for s, e in bounds], dtype=dtype)
            chunked.fill_slice(out, op, p1, p2, seed, shape, bounds, base, threads=2)
            want = full[tuple(slice(s, e) for s, e in bounds)]
            _same(out, want, f"{op} {dtype} {shape} {bounds} seed={seed} base={base}")


SERVED = [("uniform", torch.float32), ("uniform", torch.float64), ("normal", torch.float32)]


@pytest.mark.parametrize("op,dtype", SERVED)
def test_kernel_split_between_threads_inside_runs(op, dtype):
    """Tiny thread spans (a part boundary falls inside runs) across the tail block."""
    shape, bounds = (203, 77), [(1, 203), (13, 77)]
    full = _serial(op, dtype, shape, 5, 77, -1.5, 2.0)
    plan = plan_runs(shape, bounds)
    for threads in (1, 3, 8):
        out = torch.empty(plan.shape, dtype=dtype)
        served = transforms.fill_runs_selected(
            out.view(-1), plan.starts, plan.length, op, -1.5, 2.0, 5, 77, plan.total, threads, thread_min_draws=1
        )
        assert served
        _same(out, full[1:203, 13:77], f"{op} {dtype} threads={threads}")


def test_kernel_jumps_across_long_gaps(monkeypatch):
    """Gaps over JUMP_MIN_DRAWS start a new span from a jumped state instead of twisting through."""
    monkeypatch.setattr(transforms, "JUMP_MIN_DRAWS", 700)
    shape, bounds = (40, 1000), [(0, 40), (100, 110)]
    for op in ("uniform", "normal"):
        full = _serial(op, torch.float32, shape, 11, 3, 0.0, 1.0)
        out = torch.empty(40, 10)
        chunked.fill_slice(out, op, 0.0, 1.0, 11, shape, bounds, 3, threads=2)
        _same(out, full[:, 100:110], op)


def test_normal_tail_block_alone_and_odd_float_ranges():
    """Slices inside normal_'s recomputed tail, and uniform ranges where fused and unfused differ."""
    for n in (17, 31, 1000, 1001, 4099):
        full = _serial("normal", torch.float32, (n,), 9, 0, -2.0, 0.5)
        for a, b in ((n - 16, n), (n - 1, n), (n - 17, n - 3), (0, 1)):
            out = torch.empty(b - a)
            chunked.fill_slice(out, "normal", -2.0, 0.5, 9, (n,), [(a, b)])
            _same(out, full[a:b], f"n={n} [{a}, {b})")
    for lo, hi in ((-3.0, 7.5), (1.0, 1.0 + 3 * 2.0**-20), (-1e-6, 1e-6)):
        for dtype in (torch.float32, torch.float64):
            full = _serial("uniform", dtype, (50, 31), 1, 0, lo, hi)
            out = torch.empty(50, 7, dtype=dtype)
            chunked.fill_slice(out, "uniform", lo, hi, 1, (50, 31), [(0, 50), (20, 27)])
            _same(out, full[:, 20:27], f"uniform({lo}, {hi}) {dtype}")


def test_forced_kernel_mismatch_falls_back_to_torch_and_is_reported(monkeypatch):
    fill_runs_selected = transforms.fill_runs_selected

    def flipped(flat, *args, **kwargs):  # the kernel's normal/float32 one bit off serial torch
        ok = fill_runs_selected(flat, *args, **kwargs)
        if args[2] == "normal" and flat.dtype == torch.float32 and flat.numel():
            flat.view(torch.uint8)[0] ^= 1
        return ok

    monkeypatch.setattr(transforms, "fill_runs_selected", flipped)
    chunked.clear_self_test()
    try:
        assert chunked.selected_self_test()["normal/float32"] is False
        assert chunked.capability()["selected_draws_failed"] == ["normal/float32"]
        assert chunked.selected_ok("uniform", torch.float32) and not chunked.selected_ok("normal", torch.float32)
        monkeypatch.setattr(transforms, "fill_runs_selected", _must_not_run)
        full = _serial("normal", torch.float32, (64, 1000), 3, 0, 0.0, 1.0)
        out = torch.empty(64, 125)
        chunked.fill_slice(out, "normal", 0.0, 1.0, 3, (64, 1000), [(0, 64), (125, 250)], threads=2)
        _same(out, full[:, 125:250], "fallback")
    finally:
        monkeypatch.undo()
        chunked.clear_self_test()


def test_without_the_kernel_slices_stay_exact(monkeypatch):
    monkeypatch.setattr(transforms, "library", lambda: None)
    assert not transforms.serves("uniform", torch.float32)
    full = _serial("uniform", torch.float32, (64, 1000), 4, 0, -1.0, 1.0)
    out = torch.empty(64, 125)
    chunked.fill_slice(out, "uniform", -1.0, 1.0, 4, (64, 1000), [(0, 64), (125, 250)], threads=2)
    _same(out, full[:, 125:250], "no kernel")


# --- over HTTP: torch.manual_seed + torch.nn.init, cut -------------------------------------------

SCHEMES = ["uniform", "normal", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize(
    "shape,bounds",
    [
        pytest.param([64, 1000], [None, [125, 250]], id="column-1/8"),
        pytest.param([48, 37], [[5, 40], [3, 35]], id="block"),
        pytest.param([6, 7, 9, 11], [None, [2, 6], [1, 8], [3, 4]], id="4d-inner"),
        pytest.param([3, 5], [None, [1, 4]], id="tiny"),
    ],
)
def test_post_shard_equals_the_cut_of_torch_nn_init(http, shape, bounds, dtype):
    index = tuple(slice(*b) if b else slice(None) for b in bounds)
    for scheme in SCHEMES:
        for seed in SEEDS:
            body = {
                "shape": shape, "init": {"scheme": scheme}, "seed": seed, "device": "cpu", "dtype": dtype,
                "slice": bounds,
            }
            r = http.post("/v1/tensor", json=body)
            assert r.status_code == 200, r.text
            want = reference(shape, scheme, {}, dtype, seed)[index]
            assert as_bytes(load(r.content)["weight"]) == as_bytes(want), (scheme, seed)


def test_get_column_shard_of_a_row_parallel_weight(http):
    shape = [64, 4096]
    for scheme in ("kaiming_uniform", "normal"):
        params = {"shape": "64,4096", "scheme": scheme, "seed": str(2**64 - 1), "device": "cpu", "slice": ":,1024:2048"}
        r = http.get("/v1/tensor", params=params)
        assert r.status_code == 200, r.text
        want = reference(shape, scheme, {}, "float32", 2**64 - 1)[:, 1024:2048]
        assert as_bytes(load(r.content)["weight"]) == as_bytes(want)
        provenance = json.loads(decode_header(r.content)[0]["provenance"])
        assert provenance["slice"] == "direct"
