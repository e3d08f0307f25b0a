"""Fill a CPU tensor with torch's own ``uniform_``/``normal_`` bits in ordered pieces, in parallel.

The tensor is cut into pieces whose starts are multiples of 624 elements (``chunked.CHUNK_UNIT``),
so piece k begins a whole number of MT19937 blocks after the base draw and its generator is one
``mt19937.jump`` from the base state. ``threads`` workers fill pieces concurrently (torch's
kernels release the GIL); the caller's thread waits for them *in order* and reports each finished
prefix through ``on_ready(elements)``. That callback is where the stats accumulate and where a
streaming response learns it may send more, so both overlap with generation.

Piece size trades jump cost (~2 ms per set bit of the jump distance, about 10–20 ms a jump) against
time to first byte: 2^25 elements (128 MiB of float32) keeps the jumps under ~5% of the fill.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from service.engine import chunked, mt19937, transforms
from service.engine.draws import BLOCK, Op, draws_per_element, fill_serial_

PIECE_ELEMENTS = 1 << 25
# Nice value of the threads that fill a big tensor's pieces (Linux: per thread). Small jobs, the
# event loop and the sockets then win the cores while a GiB is being made: what the big job loses
# is the share it took from them (``bench/serving.py fairness``).
FILL_NICE = 5


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FILL_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: the default priority
        pass


def supported(op: Op, dtype: torch.dtype, n: int) -> bool:
    """Whether pieces reproduce the serial bits: the op/dtype passed the self-test and, for
    ``normal_``, the tensor takes the 16-element block path (n >= 16)."""
    return chunked.self_test().get(f"{op}/{str(dtype).removeprefix('torch.')}", False) and not (
        op == "normal" and n < BLOCK
    )


def piece_bounds(op: Op, n: int, threads: int, piece_elements: int = PIECE_ELEMENTS) -> list[int]:
    """0 = b_0 < … < b_k = n with inner bounds at multiples of 624; at least ``threads`` pieces
    when the tensor is big enough, and for ``normal_`` a last piece of >= 16 elements (so torch's
    tail rule reruns inside it)."""
    if n == 0:
        return [0, 0]
    if n < chunked.PARALLEL_MIN_ELEMENTS:
        return [0, n]
    count = max(threads, -(-n // piece_elements))
    limit = n - BLOCK if op == "normal" else n - 1
    unit = chunked.CHUNK_UNIT
    inner = {unit * round(i * n / count / unit) for i in range(1, count)}
    return [0, *sorted(b for b in inner if 0 < b <= limit), n]


def fill_in_pieces_(
    flat: torch.Tensor,
    op: Op,
    p1: float,
    p2: float,
    seed: int,
    base_draws: int,
    threads: int,
    on_ready: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Fill contiguous 1-D ``flat`` as ``generator_at(seed, base_draws)`` + ``flat.<op>_(p1, p2)``.

    ``on_ready(e)`` is called on this thread, in order, each time ``flat[:e]`` is final;
    ``cancelled()`` (checked between pieces) stops early, leaving the rest unfilled.
    """
    n = flat.numel()
    bounds = piece_bounds(op, n, threads)
    base = mt19937.state_at(seed, base_draws)
    d = draws_per_element(flat.dtype)
    native = chunked.selected_ok(op, flat.dtype)  # the kernel, where its self-test passed here

    def fill(k: int) -> None:
        if cancelled is not None and cancelled():
            return
        start, stop = bounds[k], bounds[k + 1]
        state = mt19937.jump(base, d * start // chunked.CHUNK_UNIT)
        piece = flat[start:stop]
        if not (native and transforms.fill_run_(piece, op, p1, p2, state)):
            fill_serial_(piece, op, p1, p2, mt19937.load_state(state))

    pieces = len(bounds) - 1
    if threads <= 1 or pieces == 1:
        for k in range(pieces):
            fill(k)
            if on_ready is not None:
                on_ready(bounds[k + 1])
        return flat
    with ThreadPoolExecutor(
        max_workers=min(threads, pieces), thread_name_prefix="initsvc-fill", initializer=_lower_priority
    ) as pool:
        futures = [pool.submit(fill, k) for k in range(pieces)]
        try:
            for k, future in enumerate(futures):
                future.result()
                if cancelled is not None and cancelled():
                    break
                if on_ready is not None:
                    on_ready(bounds[k + 1])
        finally:
            for future in futures:
                future.cancel()
    return flat
