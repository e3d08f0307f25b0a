"""Torch-identical ``uniform_``/``normal_`` on CPU in chunks or slices: the self-test and slices.

A CPU tensor filled by ``t.uniform_(a, b, generator=g)`` or ``t.normal_(mean, std, generator=g)``
is a function of where ``g`` stands in its MT19937 stream. If we know how many 32-bit draws
precede element i, a generator jumped there (``mt19937``) fills ``t[i:j]`` with the same bits, so
threads can fill disjoint chunks at once (``pieces``) and a slice needs no prefix. ``draws`` holds
that accounting for torch 2.13: element i of ``uniform_`` starts at draw d·i (d = 2 for float64, else 1),
and ``normal_`` (n >= 16) works in 16-element blocks with a recomputed tail, so a chunk [s, e) with
16 | s, e - s >= 16 and (16 | e or e = n) reproduces the full tensor from draw d·s. Chunk starts
here are multiples of 624 elements: d·s is then a whole number of blocks, and every thread's
generator is one ``mt19937.jump`` from the state at ``base_draws``.

A startup ``self_test`` checks this per (op, dtype) against serial torch; anything that fails is
generated serially (and a slice of it cut from a serial full tensor).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from service.engine import mt19937, transforms
from service.engine.draws import (
    BLOCK,
    DTYPES,
    OPS,
    Op,
    check_op_dtype,
    draws_consumed,
    draws_per_element,
    fill_serial_,
)
from service.engine.slices import fill_runs, plan_runs

__all__ = ["capability", "clear_self_test", "draws_consumed", "fill_slice", "self_test"]

CHUNK_UNIT = mt19937.N  # chunk starts at multiples of 624 elements: 16 | 624 and a jump of d blocks

# Below this many elements a whole tensor is one piece, filled serially (``pieces.piece_bounds``):
# the measured break-even. On a 2-core EPYC (torch 2.13, pre-touched float32, 2 threads;
# bench/results/parallel_cpu.txt) parallel over serial was 0.71x/0.78x (uniform_/normal_) at 2^20
# elements, 1.08x/1.00x at 2^21 and 1.43x/1.46x at 2^22. The fixed cost is one jump (1–5 ms,
# ``mt19937.jump_seconds``) plus starting a thread.
PARALLEL_MIN_ELEMENTS = 1 << 21

_self_test_lock = threading.Lock()
_self_test_cache: dict[str, bool] = {}
_select_cache: dict[str, bool] = {}  # the selected-draw kernel's part of the self-test


def default_threads() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _fill_chunks(
    flat: torch.Tensor, op: Op, p1: float, p2: float, base: mt19937.MTState, bounds: list[int]
) -> None:
    """Fill ``flat[s_k:s_{k+1}]`` for every k, chunk 0 here and the others on pool threads."""
    d = draws_per_element(flat.dtype)

    def fill(k: int) -> None:
        s, e = bounds[k], bounds[k + 1]
        g = mt19937.load_state(mt19937.jump(base, d * s // CHUNK_UNIT))
        fill_serial_(flat[s:e], op, p1, p2, g)

    with ThreadPoolExecutor(max_workers=len(bounds) - 2) as pool:
        futures = [pool.submit(fill, k) for k in range(1, len(bounds) - 1)]
        fill(0)
        for f in futures:
            f.result()


def fill_slice(
    out: torch.Tensor,
    op: Op,
    p1: float,
    p2: float,
    seed: int,
    full_shape: tuple[int, ...] | list[int],
    slice_bounds: list[tuple[int, int]],
    base_draws: int = 0,
    threads: int = 1,
) -> torch.Tensor:
    """Fill ``out`` with ``full[s0:e0, s1:e1, ...]`` of the tensor serial torch would give.

    Only the runs of the flat index space the slice covers are generated. Where the selected-draw
    kernel serves (op, dtype) and passed the self-test (``selected_ok``), it skips the gaps by
    twisting and transforms only the runs, on ``threads`` threads (``transforms``); otherwise each
    group of runs comes from a torch generator jumped to its first draw (``slices``). Returns ``out``.
    """
    check_op_dtype(op, out.dtype)
    full_shape = tuple(int(x) for x in full_shape)
    plan = plan_runs(full_shape, slice_bounds)
    if tuple(out.shape) != plan.shape:
        raise ValueError(f"out must have the slice's shape {list(plan.shape)}; got {list(out.shape)}")
    if out.numel() == 0:
        return out
    n = math.prod(full_shape)
    if (op == "normal" and n < BLOCK) or not _passed(op, out.dtype):
        full = torch.empty(full_shape, dtype=out.dtype)
        fill_serial_(full, op, p1, p2, mt19937.generator_at(seed, base_draws))
        return out.copy_(full[tuple(slice(s, e) for s, e in slice_bounds)])
    target = out if out.is_contiguous() else torch.empty(plan.shape, dtype=out.dtype)
    flat = target.view(-1)
    if not (
        selected_ok(op, out.dtype)
        and transforms.fill_runs_selected(
            flat, plan.starts, plan.length, op, p1, p2, seed, base_draws, plan.total, threads
        )
    ):
        fill_runs(flat, plan, op, p1, p2, seed, base_draws)
    return out if target is out else out.copy_(target)


def selected_ok(op: Op, dtype: torch.dtype) -> bool:
    """Whether slices of (op, dtype) may use the selected-draw kernel: it serves them, and the
    self-test found its bytes equal to serial torch on this host."""
    return transforms.serves(op, dtype) and selected_self_test().get(_key(op, dtype), False)


def self_test() -> dict[str, bool]:
    """``{"uniform/float32": True, ...}``: chunked and sliced generation equal serial torch, bytes.

    Per (op, dtype): n = 3001 (n % 16 = 9, so the tail rule runs) after 1001 base draws (not a
    whole block), in chunks [0, 624, 1872, 3001] (jumps of 1 and 3 blocks, 2 and 6 for float64),
    plus a slice across the tail. The reference is plain torch: ``manual_seed``, then
    ``random_`` on 1001 int32 (one draw each), then the op. Cached until ``clear_self_test``.
    The same run also checks the selected-draw kernel (``selected_self_test``).
    """
    with _self_test_lock:
        if not _self_test_cache:
            for op in OPS:
                for dtype in DTYPES:
                    _self_test_cache[_key(op, dtype)] = _check_one(op, dtype)
                    if transforms.serves(op, dtype):
                        _select_cache[_key(op, dtype)] = _check_selected(op, dtype)
        return dict(_self_test_cache)


def selected_self_test() -> dict[str, bool]:
    """``{"uniform/float32": True, ...}`` for each (op, dtype) the selected-draw kernel serves:
    its slices equal serial torch's (``_check_selected``). Empty without the kernel."""
    self_test()
    with _self_test_lock:
        return dict(_select_cache)


def self_test_passed(op: str, dtype: torch.dtype) -> bool | None:
    """What the cached self-test found for (op, dtype), without running it: ``None`` before it ran."""
    return _self_test_cache.get(_key(op, dtype)) if _self_test_cache else None


def clear_self_test() -> None:
    """Forget the cached self-test, so the next call runs it again."""
    with _self_test_lock:
        _self_test_cache.clear()
        _select_cache.clear()


def capability() -> dict:
    """What this host serves in parallel, for provenance (``/v1/devices``)."""
    passed, selected = self_test(), selected_self_test()
    return {
        "parallel": sorted(k for k, ok in passed.items() if ok),
        "serial_only": sorted(k for k, ok in passed.items() if not ok),
        # Slices whose gaps the selected-draw kernel (``transforms``) skips; where its self-test
        # failed; why it is not built.
        "selected_draws": sorted(k for k, ok in selected.items() if ok),
        "selected_draws_failed": sorted(k for k, ok in selected.items() if not ok),
        "selected_draws_unavailable": transforms.unavailable_reason(),
        "threads_default": default_threads(),
        "min_parallel_elements": PARALLEL_MIN_ELEMENTS,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _check_one(op: Op, dtype: torch.dtype, seed: int = 20240607, base_draws: int = 1001) -> bool:
    n, p1, p2 = 3001, -3.0, 7.5
    g = torch.Generator().manual_seed(seed)
    torch.empty(base_draws, dtype=torch.int32).random_(generator=g)
    expected = fill_serial_(torch.empty(n, dtype=dtype), op, p1, p2, g)
    chunked = torch.empty(n, dtype=dtype)
    _fill_chunks(chunked, op, p1, p2, mt19937.state_at(seed, base_draws), [0, 624, 1872, n])
    a, b = 2980, n - 9  # from a block start inside [n-16, n) to just before the end
    sliced = torch.empty(b - a, dtype=dtype)
    fill_runs(sliced, plan_runs((n,), [(a, b)]), op, p1, p2, seed, base_draws)
    as_bytes = lambda x: x.view(torch.uint8)  # noqa: E731
    return torch.equal(as_bytes(chunked), as_bytes(expected)) and torch.equal(
        as_bytes(sliced), as_bytes(expected[a:b])
    )


def _check_selected(op: Op, dtype: torch.dtype, seed: int = 20240607, base_draws: int = 1001) -> bool:
    """The kernel's 2-D blocks of a [97, 101] tensor after 1001 base draws equal the same cuts of
    serial torch: odd row length, runs that start on odd draws, the last run at the very end
    (9797 % 16 = 5, so normal_'s tail block), one and two threads, and one block of 9700 elements,
    enough to tell fused from unfused float steps (a wrong choice in the normal_ kernel changed
    about 1 element in 1200); then the whole tensor as one run (``transforms.fill_run_``, what
    ``pieces`` uses). Cached with the rest of the self-test."""
    shape, p1, p2 = (97, 101), -3.0, 7.5
    g = torch.Generator().manual_seed(seed)
    torch.empty(base_draws, dtype=torch.int32).random_(generator=g)
    full = fill_serial_(torch.empty(shape, dtype=dtype), op, p1, p2, g)
    cuts = (
        (((0, 97), (7, 20)), 1),
        (((3, 97), (40, 101)), 2),
        (((10, 11), (0, 101)), 1),
        (((0, 97), (0, 100)), 2),
    )
    for bounds, threads in cuts:
        plan = plan_runs(shape, bounds)
        got = torch.empty(plan.shape, dtype=dtype)
        ok = transforms.fill_runs_selected(
            got.view(-1), plan.starts, plan.length, op, p1, p2, seed, base_draws, plan.total, threads,
            thread_min_draws=1,
        )
        want = full[tuple(slice(a, b) for a, b in bounds)].contiguous()
        if not (ok and torch.equal(got.view(torch.uint8), want.view(torch.uint8))):
            return False
    whole = torch.empty(shape, dtype=dtype)  # the whole tensor in one run (``pieces`` on this host)
    ok = transforms.fill_run_(whole.view(-1), op, p1, p2, mt19937.state_at(seed, base_draws))
    return ok and torch.equal(whole.view(torch.uint8), full.view(torch.uint8))


def _passed(op: Op, dtype: torch.dtype) -> bool:
    return self_test()[_key(op, dtype)]


def _key(op: str, dtype: torch.dtype) -> str:
    return f"{op}/{str(dtype).removeprefix('torch.')}"

