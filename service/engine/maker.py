"""Make one tensor from a checked recipe on a device: allocate, fill, summarize.

This is the unit of work a device worker runs. It never touches torch's global RNG: the caller
passes the request's ``Streams``.

Longer than the ~300 lines most modules keep to: make_tensor's paths (serial, parallel pieces, direct slice, portable) share one spec, one guard and one stats pass; they are one decision.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from service.engine import chunked, pieces
from service.engine.distributions import Distribution, describe
from service.engine.draws import BLOCK, Op, draws_consumed, draws_per_element, generation_range
from service.engine.portable import portable_fill
from service.engine.rng import DTYPES, Streams, compute_dtype, open_streams
from service.engine.schemes import SCHEMES, deterministic_slice_
from service.engine.stats import StatsAccumulator, expected_fields
from service.errors import InitServiceError, RecipeError

# warnings.catch_warnings swaps process-wide state (Python < 3.14), so captures take turns.
_WARNINGS_LOCK = threading.RLock()


@contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect the warnings torch emits inside the block as strings, instead of printing them."""
    messages: list[str] = []
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            seen = set()
            for w in caught:
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    messages.append(text)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor's recipe, validated: torch's parameter names, defaults filled in."""

    name: str
    shape: tuple[int, ...]
    scheme: str
    params: Mapping[str, Any]
    dtype: str = "float32"
    histogram_bins: int = 0
    with_stats: bool = True
    # [start, stop) per dimension: the answer is full[start0:stop0, ...]; fans come from ``shape``.
    slice: tuple[tuple[int, int], ...] | None = None
    rng: str = "torch"  # or "portable-v1" (docs/api.md §3.1), drawn from (seed, tid) alone
    tid: int = 0


@dataclass(frozen=True)
class Output:
    """What a spec will produce, known before it is made: enough for the safetensors header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @staticmethod
    def of(spec: TensorSpec) -> Output:
        shape = _sliced_shape(spec)
        return Output(spec.name, spec.dtype, shape, math.prod(shape) * DTYPES[spec.dtype].itemsize)


def may_warn(spec: TensorSpec) -> bool:
    """Whether torch warns while making ``spec`` (so its provenance is known only afterwards):
    ``trunc_normal_`` with its mean more than 2 std outside [a, b] (torch's own test, on the
    call it gets: ``trunc_normal_tf`` draws N(0, 1) on [a, b]), and kaiming on a zero-element
    tensor. Only then is a fill's warning capture (a process-wide lock) taken."""
    p = spec.params
    if spec.scheme == "trunc_normal":
        return p["mean"] < p["a"] - 2 * p["std"] or p["mean"] > p["b"] + 2 * p["std"]
    if spec.scheme == "trunc_normal_tf":
        return 0.0 < p["a"] - 2.0 or 0.0 > p["b"] + 2.0
    return spec.scheme.startswith("kaiming") and math.prod(spec.shape) == 0


@dataclass
class MadeTensor:
    spec: TensorSpec
    tensor: torch.Tensor
    stats: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)
    compute_dtype: str | None = None  # set when torch ran the scheme in another dtype
    # How it was made, for provenance: {"threads": n, "slice": "direct" | "cut"} (CPU).
    generation: dict[str, Any] = field(default_factory=dict)


# on_ready(tensor, elements): tensor.view(-1)[:elements] is final (the tensor being returned).
ReadyCallback = Callable[[torch.Tensor, int], None]


# What torch raises on arguments it refuses: ValueError ("Mode ... not supported"), IndexError
# (an index past a zero-size dimension), ZeroDivisionError (a fan of 0 in a std), RuntimeError
# (a kernel's own argument check). Anything else from a filler (KeyError, TypeError, ...) is a bug.
TORCH_REFUSALS = (ValueError, IndexError, ZeroDivisionError, RuntimeError)
# torch's words for our fields, where they differ.
_TORCH_NAMES = {"negative_slope": "a"}


def _blamed_field(spec: TensorSpec, exc: BaseException) -> tuple[str, ...]:
    """The recipe field torch's refusal points at: the first parameter its message names (in
    torch's words or ours), else the shape (indexing and division errors come from its sizes)."""
    if not isinstance(exc, (IndexError, ZeroDivisionError)):
        for word in re.findall(r"[A-Za-z_]+", str(exc)):
            word = _TORCH_NAMES.get(word.lower(), word.lower())
            if word in spec.params:
                return ("init", word)
    return ("shape",)


@contextmanager
def recipe_guard(spec: TensorSpec) -> Iterator[None]:
    """Turn what torch raises on this recipe into a ``RecipeError`` naming the field (a 422), so
    no input reaches torch unguarded. Out-of-memory and our own errors pass through (the worker
    maps out-of-memory to a 503); anything else is a bug and stays one (a 500)."""
    try:
        yield
    except InitServiceError:
        raise
    except TORCH_REFUSALS as exc:
        if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
            raise
        raise RecipeError.at(
            _blamed_field(spec, exc),
            f"torch cannot make {spec.scheme} with {dict(spec.params)} on shape {list(spec.shape)} "
            f"in {spec.dtype}: {type(exc).__name__}: {exc}",
        ) from exc


def fill(t: torch.Tensor, spec: TensorSpec, streams: Streams, qr_threads: int = 1) -> list[str]:
    """Fill ``t`` (allocated with the spec's shape and dtype) in place; return torch's warnings.

    Every ``torch.nn.init`` call on a recipe (one tensor, a list of them, a module's overrides,
    portable mode's deterministic schemes) goes through here, behind ``recipe_guard``. Warnings
    are captured only where torch gives one (``may_warn``): the capture swaps process-wide state
    under a lock, which would make every other fill wait for this one."""
    with recipe_guard(spec), torch.no_grad():
        if not may_warn(spec):
            SCHEMES[spec.scheme].fill(t, spec.params, streams, qr_threads)
            return []
        with captured_warnings() as messages:
            SCHEMES[spec.scheme].fill(t, spec.params, streams, qr_threads)
    return messages


def cut(t: torch.Tensor, bounds: tuple[tuple[int, int], ...] | None) -> torch.Tensor:
    """``t[start0:stop0, ...]`` as a contiguous tensor (``t`` itself without a slice)."""
    if bounds is None:
        return t
    return t[tuple(slice(start, stop) for start, stop in bounds)].contiguous()


def _sliced_shape(spec: TensorSpec) -> tuple[int, ...]:
    return spec.shape if spec.slice is None else tuple(stop - start for start, stop in spec.slice)


def _flat_range(shape: tuple[int, ...], bounds: tuple[tuple[int, int], ...]) -> tuple[int, int] | None:
    """[a, b) of the flat tensor when the slice is one contiguous run of it, else ``None``:
    the dimensions after the last partial one are whole, and those before it are single indices."""
    partial = [i for i, ((start, stop), size) in enumerate(zip(bounds, shape, strict=True)) if (start, stop) != (0, size)]
    if not partial:
        return 0, math.prod(shape)
    k = partial[-1]
    if any(stop - start != 1 for start, stop in bounds[:k]):
        return None
    inner = math.prod(shape[k + 1 :])
    a = sum(start * math.prod(shape[i + 1 :]) for i, (start, _) in enumerate(bounds[: k + 1]))
    return a, a + (bounds[k][1] - bounds[k][0]) * inner


def _draws_after_torch(spec: TensorSpec, dist: Distribution, dtype: torch.dtype, n: int) -> int | None:
    """Draws the torch filler took, when the accounting knows it (``None``: unknown)."""
    if not SCHEMES[spec.scheme].random or n == 0:
        return 0
    if dist.draw is None or (dist.draw[0] == "normal" and n < BLOCK):
        return None  # rejection loops, randperm, QR's normal_, or a cached double normal
    return draws_consumed(dist.draw[0], dtype, n)


def made_alone(spec: TensorSpec, device_type: str, position_known: bool = True) -> bool:
    """Whether ``make_tensor`` makes ``spec``'s slice alone rather than the whole tensor, then cut
    (docs/api.md §4.2): always in portable-v1; on CPU for the schemes that draw nothing, and for
    one ``uniform_``/``normal_`` call from a known stream position whose chunked generation
    passed the start-up self-test (not yet run: counted as cut)."""
    if spec.rng == "portable-v1":
        return True
    if device_type != "cpu":
        return False
    if not SCHEMES[spec.scheme].random:
        return True
    draw = describe(spec.scheme, spec.params, spec.shape).draw
    n = math.prod(spec.shape)
    if draw is None or not position_known or n == 0 or (draw[0] == "normal" and n < BLOCK):
        return False
    return bool(chunked.self_test_passed(draw[0], DTYPES[spec.dtype]))


def made_bytes(specs: Sequence[TensorSpec], device_type: str, own_seeds: Sequence[int | None] = ()) -> int:
    """Bytes a job making ``specs`` in order holds at its peak: every answer, and the largest
    whole tensor a slice is cut from (each is alive only while its cut is copied, one at a time).
    Tensors on the request's shared stream after one whose draws are not known cannot take a
    direct slice."""
    total = 0
    largest_whole = 0
    position_known = True
    for i, spec in enumerate(specs):
        own = i < len(own_seeds) and own_seeds[i] is not None
        total += Output.of(spec).nbytes
        if spec.slice is not None and not made_alone(spec, device_type, position_known or own):
            largest_whole = max(largest_whole, math.prod(spec.shape) * DTYPES[spec.dtype].itemsize)
        if not own and spec.rng == "torch":
            # A direct slice or a fast fill advances by the draws torch would take; the torch
            # filler by what the accounting knows of it: the same, or unknown.
            dist = describe(spec.scheme, spec.params, spec.shape)
            drawn = _draws_after_torch(spec, dist, DTYPES[spec.dtype], math.prod(spec.shape))
            position_known = position_known and drawn is not None
    return total + largest_whole


def make_tensor(
    spec: TensorSpec,
    streams: Streams,
    device: torch.device,
    qr_threads: int = 1,
    threads: int = 1,
    on_ready: ReadyCallback | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> MadeTensor:
    """Make ``spec`` on ``device`` from ``streams``; ``on_ready(e)`` reports each finished prefix
    of the returned tensor's elements (once at the end, or piece by piece on the fast path).

    Fast path (CPU, a scheme that is one ``uniform_``/``normal_`` call, stream position known):
    big tensors are filled in pieces by ``threads`` jumped generators (``pieces``), and a slice
    is generated alone (``chunked.fill_slice``). Everything else runs the torch filler.
    """
    dist = describe(spec.scheme, spec.params, spec.shape)
    dtype = DTYPES[spec.dtype]
    n = math.prod(spec.shape)
    if spec.rng == "portable-v1":
        return _make_portable(spec, dist, streams.seed, device, on_ready)
    # (op, p1, p2, stream position in draws) when the fast path applies, else None.
    fast: tuple[Op, float, float, int] | None = None
    self_test_fallback = False
    if device.type == "cpu" and dist.draw is not None and streams.draws is not None and n > 0:
        op, p1, p2 = dist.draw
        # Worth it for slices, for tensors big enough to split, and wherever the kernel (several
        # times torch's element-by-element loop) passed its self-test here.
        worth = spec.slice is not None or n >= chunked.PARALLEL_MIN_ELEMENTS or chunked.selected_ok(op, dtype)
        if worth and pieces.supported(op, dtype, n):
            fast = (op, p1, p2, streams.draws)
        elif worth:
            # The start-up self-test found chunked generation of this op/dtype unlike serial torch here.
            self_test_fallback = pieces.supported(op, dtype, max(n, BLOCK)) is False
    messages: list[str] = []
    if fast is not None and spec.slice is not None:
        op, p1, p2, start = fast
        flat_range = _flat_range(spec.shape, spec.slice)
        if flat_range is not None and flat_range[1] > flat_range[0]:
            # One contiguous run: generate [s, e) ⊇ [a, b) in parallel pieces from draw d·s.
            a, b = flat_range
            s, e = generation_range(op, n, a, b)
            run = torch.empty(e - s, dtype=dtype)
            base = start + draws_per_element(dtype) * s
            pieces.fill_in_pieces_(run, op, p1, p2, streams.seed, base, threads, None, cancelled)
            t = run[a - s : b - s].view(_sliced_shape(spec))
            generation = {"threads": threads, "slice": "direct"}
        else:
            # Runs of the flat index space; the selected-draw kernel (where it passed the self-test)
            # skips the gaps and uses ``threads``, else one torch generator per group of runs.
            t = torch.empty(_sliced_shape(spec), dtype=dtype)
            selected = chunked.selected_ok(op, dtype)
            chunked.fill_slice(
                t, op, p1, p2, streams.seed, spec.shape, list(spec.slice), start, threads if selected else 1
            )
            generation = {"threads": threads if selected else 1, "slice": "direct"}
        streams.advance(draws_consumed(op, dtype, n))
        stats_acc = StatsAccumulator(t.reshape(-1)) if spec.with_stats else None
        if on_ready is not None:
            on_ready(t, t.numel())
    elif fast is not None:
        op, p1, p2, start = fast
        t = torch.empty(spec.shape, dtype=dtype)
        flat = t.view(-1)
        stats_acc = StatsAccumulator(flat) if spec.with_stats else None

        def ready(elements: int) -> None:
            if stats_acc is not None:
                stats_acc.feed(elements)
            if on_ready is not None:
                on_ready(t, elements)

        pieces.fill_in_pieces_(flat, op, p1, p2, streams.seed, start, threads, ready, cancelled)
        streams.advance(draws_consumed(op, dtype, n))
        generation = {"threads": min(threads, len(pieces.piece_bounds(op, n, threads)) - 1)}
    elif spec.slice is not None and device.type == "cpu" and not SCHEMES[spec.scheme].random:
        # Draws nothing: the slice's own elements, made alone (``deterministic_slice_``).
        t = torch.empty(_sliced_shape(spec), dtype=dtype)
        with recipe_guard(spec), torch.no_grad():
            deterministic_slice_(t, spec.scheme, spec.params, spec.shape, spec.slice)
        generation = {"threads": 1, "slice": "direct"}
        stats_acc = StatsAccumulator(t.reshape(-1)) if spec.with_stats else None
        if on_ready is not None:
            on_ready(t, t.numel())
    else:
        streams.sync()
        t = torch.empty(spec.shape, dtype=dtype, device=device)
        messages = fill(t, spec, streams, qr_threads)
        streams.advance(_draws_after_torch(spec, dist, dtype, n))
        t = cut(t, spec.slice)
        generation = {"threads": 1} if device.type == "cpu" else {}
        if spec.slice is not None:
            generation["slice"] = "cut"
        if self_test_fallback:
            generation["serial_fallback"] = "the start-up self-test found chunked generation unlike serial torch"
        stats_acc = StatsAccumulator(t.reshape(-1)) if spec.with_stats else None
        if on_ready is not None:
            on_ready(t, t.numel())
    stats = None
    if stats_acc is not None:
        stats = {**stats_acc.result(spec.histogram_bins), **expected_fields(dist)}
    work = compute_dtype(spec.scheme, spec.dtype)
    return MadeTensor(spec, t, stats, messages, work if work != spec.dtype else None, generation)


def _make_portable(
    spec: TensorSpec, dist: Distribution, seed: int, device: torch.device, on_ready: ReadyCallback | None
) -> MadeTensor:
    """portable-v1: every element from (seed, tid, index) alone, so a slice is made directly; the
    deterministic schemes draw nothing and are torch's own fills."""
    recipe = {"scheme": spec.scheme, **spec.params}
    t = portable_fill(spec.shape, recipe, seed, spec.tid, DTYPES[spec.dtype], device, spec.slice)
    messages: list[str] = []
    if t is None:
        t = torch.empty(_sliced_shape(spec), dtype=DTYPES[spec.dtype], device=device)
        if spec.slice is None:
            messages = fill(t, spec, open_streams(seed, device))
        else:
            with recipe_guard(spec), torch.no_grad():
                deterministic_slice_(t, spec.scheme, spec.params, spec.shape, spec.slice)
    if on_ready is not None:
        on_ready(t, t.numel())
    stats = None
    if spec.with_stats:
        stats = {**StatsAccumulator(t.reshape(-1)).result(spec.histogram_bins), **expected_fields(dist)}
    generation = {"tid": spec.tid, **({"slice": "direct"} if spec.slice is not None else {})}
    return MadeTensor(spec, t, stats, messages, None, generation)
