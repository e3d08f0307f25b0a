"""Any tensor of a preset without making the rest: stream accounting over a recorded build.

A preset's replay draws every tensor from one serial stream (torch's global CPU generator,
seeded), so tensor k's bytes depend on how many draws every op before it took. The build is
recorded once per (preset, config) on ``meta`` (``recording.py``); each draw's count is a
function of its shape and dtype (``engine/draws.py``), so where each op's draws begin is a prefix
sum, known without generating anything. To make key K:

1. **Slice.** Walking the record backwards from the end with K's storage live, an op is needed
   when it writes a live storage; what it reads becomes live, and what it overwrites whole without
   reading (``uniform_``, ``normal_``, ``fill_``, a factory) stops being live. For a Llama
   ``down_proj.weight`` that leaves its final ``normal_`` alone: its ``kaiming_uniform_`` at
   construction is overwritten, so it is counted but never generated.
2. **Offsets.** Walking forwards to the last needed op: draws since the last known state, and
   whether the generator holds a cached double normal (``normal_`` under 16 elements or
   non-contiguous uses ``normal_distribution<double>``, which caches the second value of a pair,
   unscaled, for the next such op). An **unaccountable** op (torch's ``trunc_normal_``, rejection
   sampling) before a needed op is run by itself from its known state, on a tensor of its shape,
   and the state it leaves becomes the new known state: the answer is generated from the last
   known offset.
3. **Replay.** Only K's storages are allocated, on the CPU; the needed ops run in order, each
   draw with a private ``torch.Generator`` jumped to its offset (``engine/mt19937.py``); a cached
   normal is rebuilt by drawing the pair that set it (one float64 ``normal_``) and jumping on.

Keys that depend on an **opaque** op (an RNG op without accounting, or a value made outside
dispatch) are made by the whole build; so is every key of a preset whose self-test failed
(:func:`self_test`: accounting against the serial build, on small configs of every preset).
The answer is byte-identical either way.

Longer than the ~300 lines most modules keep to: the accounting walk (offsets, keep-sets, jumps), piece planning and the self-test all read one recording format.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from service.engine import mt19937
from service.engine.draws import PAIR_DRAWS, draws_per_element, fill_draws, fill_serial_, uses_double_normal
from service.presets.recording import _DEVICE, Op, Recording, Ref, _covers, record


@dataclass(frozen=True)
class Slice:
    """What making some keys alone takes: the ops to run (indices, in order), the storages they
    allocate, and the unaccountable ops to run from their known state first. ``reason`` is set
    (and the rest is empty) when the keys need the whole build."""

    keys: tuple[str, ...]
    needed: tuple[int, ...]
    storages: tuple[int, ...]
    regenerated: tuple[int, ...]
    nbytes: int
    reason: str = ""

    @property
    def whole(self) -> bool:
        return bool(self.reason)


@functools.lru_cache(maxsize=16)
def _recording(preset, config_json: str) -> Recording:
    return record(preset.build, json.loads(config_json))


def recording(preset, config: Mapping[str, Any]) -> Recording:
    """The recorded build of ``preset`` with a resolved ``config`` (cached per config)."""
    return _recording(preset, json.dumps(config, sort_keys=True))


def plan_slice(rec: Recording, keys: Sequence[str]) -> Slice:
    """The backward slice of ``keys`` (module docstring, 1) and whether it can be made alone."""
    live = {rec.keys[k].sid for k in keys}
    needed = []
    for op in reversed(rec.ops):
        if op.writes & live:
            needed.append(op.index)
            live -= op.kills
            live |= op.reads
    needed.reverse()
    last = needed[-1] if needed else -1
    regenerated = []
    for op in rec.ops[: last + 1]:
        if op.kind == "opaque" and (op.draws_rng or op.index in needed):
            return Slice(tuple(keys), (), (), (), 0, reason=op.reason)
        if op.kind == "trunc_normal" and op.index < last:
            regenerated.append(op.index)
    storages = sorted({s for i in needed for s in rec.ops[i].writes | rec.ops[i].reads} | {rec.keys[k].sid for k in keys})
    scratch = sum(3 * rec.ops[i].draw_target.numel * rec.ops[i].draw_target.dtype.itemsize for i in regenerated)
    nbytes = sum(rec.storages[s].nbytes for s in storages) + scratch
    return Slice(tuple(keys), tuple(needed), tuple(storages), tuple(regenerated), nbytes)


# --- forwards: where each draw begins ---------------------------------------------------------


@dataclass
class _Position:
    anchor: mt19937.MTState  # the last known state
    draws: int = 0  # draws since it
    cache: Any = "anchor"  # "anchor" (as the anchor has it), None (no cached normal), or ("pair", draws)
    _at: tuple[int, mt19937.MTState] | None = None  # the last state computed, to jump on from

    def cached(self) -> bool:
        if self.cache == "anchor":
            return bool(self.anchor.normal_is_valid)
        return self.cache is not None

    def _stream(self, draws: int) -> mt19937.MTState:
        """The anchor after ``draws`` draws (its caches as the anchor has them), jumping on from
        the last such state when it is not past ``draws``."""
        at, state = self._at if self._at and self._at[0] <= draws else (0, self.anchor)
        state = mt19937.advance_state(state, draws - at)
        self._at = (draws, state)
        return state

    def generator(self) -> torch.Generator:
        """A private generator in exactly this position, cached normal included."""
        if isinstance(self.cache, tuple):
            start = self.cache[1]
            g = mt19937.load_state(self._stream(start))
            torch.empty(1, dtype=torch.float64).normal_(generator=g)  # the pair that set the cache
            state = mt19937.advance_state(mt19937.decode_state(g.get_state()), self.draws - start - PAIR_DRAWS)
        else:
            state = self._stream(self.draws)
            if self.cache is None and state.normal_is_valid:
                state = dataclasses.replace(state, normal_is_valid=0, normal_y=0.0)
        return mt19937.load_state(state)


def _law_args(op: Op) -> tuple[float, float]:
    """The (a, b) or (mean, std) an accounted draw uses."""
    if op.func in (torch.ops.aten.rand.default, torch.ops.aten.randn.default):
        return (0.0, 1.0)
    rest = list(op.args[1:3])
    names = ("from", "to") if op.law == "uniform" else ("mean", "std")
    defaults = (0.0, 1.0)
    return tuple(rest[i] if i < len(rest) else op.kwargs.get(names[i], defaults[i]) for i in range(2))


def _trunc_normal_(op: Op, tensor: torch.Tensor, generator: torch.Generator) -> None:
    """Run a recorded ``trunc_normal_`` op on ``tensor``: its (mean, std, a, b) as recorded."""
    _, mean, std, a, b = op.args
    torch.nn.init.trunc_normal_(tensor, mean, std, a, b, generator=generator)


class StreamWalk:
    """The serial build's generator state at each wanted draw, found walking forwards once.

    ``state(i)`` walks on as far as op ``i`` (keeping the state of every wanted draw it passes,
    so later requests for earlier ops are answered from memory) and returns a copy of the state
    (a ``torch.Generator`` state tensor) the serial build's generator has when op ``i`` starts.
    One walk serves a whole answer: each jump goes on from the previous wanted draw."""

    def __init__(self, rec: Recording, wanted: Sequence[int], seed: int):
        self.rec = rec
        self.wanted = {i for i in wanted if rec.ops[i].draws_rng}
        self.last = max(self.wanted, default=-1)
        self._pos = _Position(mt19937.seeded_state(seed))
        self._next = 0  # the first op not walked yet
        self._states: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()

    def state(self, i: int) -> torch.Tensor:
        with self._lock:
            while i not in self._states:
                if self._next > self.last:
                    raise KeyError(f"op {i} is not a wanted draw")
                self._step(self.rec.ops[self._next])
                self._next += 1
            return self._states[i]

    def generator(self, i: int) -> torch.Generator:
        g = torch.Generator()
        g.set_state(self.state(i))
        return g

    def _step(self, op: Op) -> None:
        if not op.draws_rng:
            return
        pos = self._pos
        if op.index in self.wanted:
            self._states[op.index] = pos.generator().get_state()
        if op.index == self.last:
            return
        t = op.draw_target
        if op.kind == "trunc_normal":  # unaccountable: run it alone; where it stops is the new known state
            g = torch.Generator()
            g.set_state(self._states[op.index] if op.index in self._states else pos.generator().get_state())
            _trunc_normal_(op, torch.empty_strided(t.size, t.stride, dtype=t.dtype), g)
            self._pos = _Position(mt19937.decode_state(g.get_state()))
            return
        law = op.draw_law
        draws, cached_after = fill_draws(law, t.dtype, t.numel, t.contiguous(), pos.cached())
        if law == "normal" and uses_double_normal(t.numel, t.contiguous()):
            pos.cache = ("pair", pos.draws + draws - PAIR_DRAWS) if cached_after else None
        pos.draws += draws


def generators(rec: Recording, sl: Slice, seed: int) -> dict[int, torch.Generator]:
    """A generator for each needed draw of ``sl``, each in the state the serial build has there."""
    walk = StreamWalk(rec, sl.needed, seed)
    return {i: walk.generator(i) for i in sorted(walk.wanted)}


# --- replay -------------------------------------------------------------------------------------


def _resolve(x: Any, view: Callable[[Ref], torch.Tensor]) -> Any:
    """A recorded argument made real: a ``Ref`` is ``view(ref)``, the device is the CPU."""
    if isinstance(x, Ref):
        return view(x)
    if x is _DEVICE:
        return torch.device("cpu")
    if isinstance(x, (list, tuple)):
        return type(x)(_resolve(v, view) for v in x)
    return x


def make(rec: Recording, sl: Slice, seed: int, walk: StreamWalk | None = None) -> dict[str, torch.Tensor]:
    """The keys of ``sl``, each equal to ``replay(...)[key]``, making only their slice. ``walk``:
    a shared walk of the same seed whose wanted draws include this slice's (each draw then gets
    its own copy of the state there)."""
    if walk is None:
        gens = generators(rec, sl, seed)
    else:
        gens = {i: walk.generator(i) for i in sl.needed if rec.ops[i].draws_rng}
    real: dict[int, torch.Tensor] = {}

    # No closure here refers to itself: a recursive one would make a reference cycle holding
    # ``real`` (every storage made), freed only when the cyclic GC next runs.
    def view(r: Ref) -> torch.Tensor:
        base = real.get(r.sid)
        if base is None:
            st = rec.storages[r.sid]
            base = real[r.sid] = torch.empty(st.numel, dtype=st.dtype)
        return base.as_strided(r.size, r.stride, r.offset)

    def resolve(x):
        return _resolve(x, view)

    with torch.no_grad():
        for i in sl.needed:
            op = rec.ops[i]
            if op.kind == "constant":
                (sid,) = op.writes
                real[sid] = op.args[0].clone()
            elif op.kind == "trunc_normal":
                _trunc_normal_(op, view(op.args[0]), gens[i])
            elif op.law is not None:
                a, b = _law_args(op)
                t = view(op.draw_target)
                (t.uniform_ if op.law == "uniform" else t.normal_)(a, b, generator=gens[i])
            else:
                result = op.func(*resolve(op.args), **{k: resolve(v) for k, v in op.kwargs.items()})
                flat = result if isinstance(result, (list, tuple)) else [result]
                for pos, r in op.outputs:
                    real[r.sid] = flat[pos]
    return {k: view(rec.keys[k]) for k in sl.keys}


# --- whole answers in units ---------------------------------------------------------------------

# A key whose slice is one plain draw over its whole storage (``normal_``/``uniform_``, contiguous,
# the normal_fill path) and that has more than two pieces' worth of elements is made in pieces of
# this many elements, each from its own generator: a multiple of 16 (whole ``normal_`` blocks) and
# of 624·2^14, so piece k starts popcount(k) table passes away from the draw's start.
PIECE_ELEMENTS = 624 * (1 << 14)


@dataclass(frozen=True)
class Unit:
    """One piece of work of a whole answer: elements [start, stop) of ``key``. ``op`` is the one
    draw a piece is cut from (None: the key is made whole by its ``slice``). ``generated``: the
    bytes its storages take while it is made (in the build's dtype)."""

    key: str
    slice: Slice
    start: int
    stop: int
    op: int | None
    generated: int

    @property
    def numel(self) -> int:
        return self.stop - self.start


def _one_plain_draw(rec: Recording, key: str, sl: Slice) -> Op | None:
    if len(sl.needed) != 1:
        return None
    op = rec.ops[sl.needed[0]]
    ref, target = rec.keys[key], op.target
    if op.kind != "aten" or op.law is None or target is None or target.sid != ref.sid:
        return None
    storage = rec.storages[ref.sid]
    if not (_covers(ref, storage) and _covers(target, storage)):
        return None
    if op.law == "normal" and uses_double_normal(target.numel, True):
        return None
    return op


def plan_units(rec: Recording, keys: Sequence[str], piece_elements: int = PIECE_ELEMENTS) -> list[Unit] | str:
    """``keys`` as units of work, in order (a key's pieces in element order), each made alone;
    or why some key needs the whole build."""
    units: list[Unit] = []
    for key in keys:
        sl = plan_slice(rec, [key])
        if sl.whole:
            return f"{key}: {sl.reason}"
        ref = rec.keys[key]
        op = _one_plain_draw(rec, key, sl)
        if op is None or ref.numel <= 2 * piece_elements:
            units.append(Unit(key, sl, 0, ref.numel, None, sl.nbytes))
            continue
        cuts = list(range(0, ref.numel, piece_elements))
        if ref.numel - cuts[-1] < 16:  # the last piece keeps torch's tail rule: at least 16 elements
            cuts.pop()
        for start, stop in zip(cuts, [*cuts[1:], ref.numel], strict=True):
            units.append(Unit(key, sl, start, stop, op.index, (stop - start) * ref.dtype.itemsize))
    return units


def make_piece(rec: Recording, unit: Unit, walk: StreamWalk, out: torch.Tensor | None = None) -> torch.Tensor:
    """Elements [start, stop) of a piece unit's key, flat, equal to the serial build's: its draw's
    state at the op, jumped on by the draws of the elements before the piece (``engine/draws.py``:
    element i of a uniform_, or of a whole normal_ block, starts at draw d·i)."""
    op = rec.ops[unit.op]  # type: ignore[index]
    target = op.draw_target
    state = mt19937.decode_state(walk.state(op.index))
    g = mt19937.load_state(mt19937.advance_state(state, draws_per_element(target.dtype) * unit.start))
    buf = out if out is not None and out.dtype == target.dtype else torch.empty(unit.numel, dtype=target.dtype)
    a, b = _law_args(op)
    with torch.no_grad():
        fill_serial_(buf, op.draw_law, a, b, g)
    return buf


def sliceable(rec: Recording, key: str) -> Op | None:
    """The one plain draw ``key`` is made by, when a part of it can be generated alone (else None)."""
    sl = plan_slice(rec, [key])
    return None if sl.whole else _one_plain_draw(rec, key, sl)


def make_sliced(rec: Recording, key: str, bounds: Sequence[tuple[int, int]], walk: StreamWalk) -> torch.Tensor:
    """``full[s0:e0, ...]`` of a ``sliceable`` key, generating only the elements from the first
    run to the last (widened to whole ``normal_`` blocks and its tail rule: ``draws.generation_range``)."""
    import numpy as np

    from service.engine.draws import generation_range
    from service.engine.slices import plan_runs

    op = sliceable(rec, key)
    assert op is not None, key
    ref = rec.keys[key]
    plan = plan_runs(ref.size, bounds)
    if plan.starts.size == 0:
        return torch.empty(plan.shape, dtype=ref.dtype)
    first, last = int(plan.starts[0]), int(plan.starts[-1]) + plan.length
    s, e = generation_range(op.draw_law, ref.numel, first, last)
    unit = Unit(key, plan_slice(rec, [key]), s, e, op.index, (e - s) * ref.dtype.itemsize)
    buf = make_piece(rec, unit, walk)
    idx = (plan.starts[:, None] - s) + np.arange(plan.length, dtype=np.int64)
    return buf[torch.from_numpy(idx.reshape(-1))].reshape(plan.shape)


def make_cuts(
    rec: Recording, sl: Slice | None, direct: Collection[str], cuts: Mapping[str, Sequence[tuple[int, int]]], seed: int
) -> dict[str, torch.Tensor]:
    """The keys of ``sl`` made alone (whole), and ``full[cuts[key]]`` of each ``direct`` key
    (``sliceable``), generating only that part: what ``slice`` on a state_dict needs."""
    state = make(rec, sl, seed) if sl is not None and sl.keys else {}
    if direct:
        walk = StreamWalk(rec, [plan_slice(rec, [k]).needed[0] for k in direct], seed)
        for key in direct:
            state[key] = make_sliced(rec, key, cuts[key], walk)
    return state


def cut(t: torch.Tensor, bounds: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``t[s0:e0, s1:e1, ...]``, contiguous."""
    return t[tuple(slice(a, b) for a, b in bounds)].contiguous()


# --- self-test ----------------------------------------------------------------------------------

# Small configs of every preset: odd widths (normal_ under 16 elements, cached normals), padding
# rows, tied and untied heads, optional modules, every weight_init.
SELF_TEST_CONFIGS: dict[str, tuple[dict[str, Any], ...]] = {
    "transformers/GPT2LMHeadModel": (
        {"n_layer": 2, "n_embd": 12, "n_head": 2, "vocab_size": 37, "n_positions": 9, "n_inner": 7,
         "add_cross_attention": True, "tie_word_embeddings": False},
    ),
    "transformers/BertModel": (
        {"num_hidden_layers": 2, "hidden_size": 10, "num_attention_heads": 2, "intermediate_size": 7,
         "vocab_size": 31, "max_position_embeddings": 9, "type_vocab_size": 1, "pad_token_id": 3},
    ),
    "transformers/LlamaForCausalLM": (
        {"num_hidden_layers": 2, "hidden_size": 8, "intermediate_size": 11, "num_attention_heads": 2,
         "num_key_value_heads": 1, "vocab_size": 29, "pad_token_id": 2, "attention_bias": True, "mlp_bias": True},
    ),
    "transformers/ViTModel": (
        {"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 11,
         "image_size": 8, "patch_size": 4, "num_channels": 3},
        {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 24,
         "image_size": 16, "patch_size": 4, "num_channels": 3},
    ),
    "timm/VisionTransformer": (
        {"img_size": 8, "patch_size": 4, "embed_dim": 8, "depth": 2, "num_heads": 2, "num_classes": 5,
         "reg_tokens": 1, "init_values": 0.1, "fix_init": True},
        {"img_size": 8, "patch_size": 4, "embed_dim": 12, "depth": 1, "num_heads": 2, "num_classes": 3,
         "weight_init": "jax_nlhb"},
    ),
    "nanogpt/GPT": ({"n_layer": 2, "n_embd": 12, "n_head": 2, "vocab_size": 23, "block_size": 7},),
    "torchvision/resnet18": ({"num_classes": 7, "zero_init_residual": True},),
    "torchvision/resnet50": ({"num_classes": 3},),
}
SELF_TEST_SEED = 2**32 + 11

_self_test_lock = threading.Lock()
_self_test_cache: dict[str, bool] = {}


# Single keys checked alone per config (besides all keys at once): spread over the build.
SELF_TEST_SINGLE_KEYS = 6


def _same(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and torch.equal(
        got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)
    )


def _check_preset(preset, configs) -> bool:
    """Every key of each config made at once (each live draw at its own offset), and a few keys
    made alone (their own walks and cursors), against the serial build."""
    from service.presets.replay import replay

    for raw in configs:
        config, _ = preset.resolve(raw)
        whole, _ = replay(preset, config, SELF_TEST_SEED)
        rec = recording(preset, config)
        keys = [k for k in rec.keys if not plan_slice(rec, [k]).whole]
        step = max(1, len(keys) // SELF_TEST_SINGLE_KEYS)
        for chosen in [keys, *([k] for k in keys[::step][:SELF_TEST_SINGLE_KEYS]), keys[-1:]]:
            made = make(rec, plan_slice(rec, chosen), SELF_TEST_SEED)
            if not all(_same(made[k], whole[k]) for k in chosen):
                return False
    return True


def self_test() -> dict[str, bool]:
    """``{preset name: passed}``: every key of small configs made alone equals the serial build,
    byte for byte. A preset that fails is served by the whole build. Cached. Runs the layer
    types' self-test (:func:`layer_self_test`) too, so start-up gates both."""
    from service.presets import PRESETS

    with _self_test_lock:
        if not _self_test_cache:
            for name, preset in PRESETS.items():
                try:
                    ok = _check_preset(preset, SELF_TEST_CONFIGS.get(name, ()))
                except Exception:  # noqa: BLE001 - any failure of the fast path disables it
                    ok = False
                _self_test_cache[name] = ok and name in SELF_TEST_CONFIGS
        passed = dict(_self_test_cache)
    layer_self_test()
    return passed


def clear_self_test() -> None:
    with _self_test_lock:
        _self_test_cache.clear()
        _layer_self_test_cache.clear()


def capability() -> dict[str, Any]:
    """For ``/v1/devices``: the presets whose keys are made alone, and those made whole; the same
    for ``/v1/module``'s layer types."""
    passed = self_test()
    layers = layer_self_test()
    return {
        "jumped": sorted(k for k, ok in passed.items() if ok),
        "whole_only": sorted(k for k, ok in passed.items() if not ok),
        "layer_types": {
            "jumped": sorted(k for k, ok in layers.items() if ok),
            "whole_only": sorted(k for k, ok in layers.items() if not ok),
        },
    }


def usable(preset_name: str) -> bool:
    return self_test().get(preset_name, False)


# --- layer stacks (/v1/module) ----------------------------------------------------------------------

# The recorder is generic over any ``nn.Module`` build: a stack of ``/v1/module`` layers is recorded
# the same way, built on ``meta`` with the request's dtype. One small call of every layer type with
# tensors, each built after a Linear (so its draws start at a non-zero offset), with odd sizes
# (normal_ under 16 elements, padding rows, biases of k/v, projections).
LAYER_SELF_TEST_CALLS: dict[str, dict[str, Any]] = {
    "Linear": {"in_features": 5, "out_features": 7},
    "Bilinear": {"in1_features": 3, "in2_features": 4, "out_features": 5},
    "Conv1d": {"in_channels": 2, "out_channels": 3, "kernel_size": 3},
    "Conv2d": {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "groups": 1},
    "Conv3d": {"in_channels": 2, "out_channels": 2, "kernel_size": 2},
    "ConvTranspose1d": {"in_channels": 2, "out_channels": 3, "kernel_size": 3},
    "ConvTranspose2d": {"in_channels": 2, "out_channels": 3, "kernel_size": 3},
    "ConvTranspose3d": {"in_channels": 2, "out_channels": 2, "kernel_size": 2},
    "Embedding": {"num_embeddings": 11, "embedding_dim": 3, "padding_idx": 2},
    "EmbeddingBag": {"num_embeddings": 11, "embedding_dim": 6, "padding_idx": 1},
    "RNN": {"input_size": 4, "hidden_size": 5, "num_layers": 2, "bidirectional": True},
    "LSTM": {"input_size": 4, "hidden_size": 5, "num_layers": 2, "proj_size": 3},
    "GRU": {"input_size": 4, "hidden_size": 5, "num_layers": 1, "bias": False},
    "RNNCell": {"input_size": 4, "hidden_size": 5},
    "LSTMCell": {"input_size": 4, "hidden_size": 5},
    "GRUCell": {"input_size": 4, "hidden_size": 5},
    "LayerNorm": {"normalized_shape": [6]},
    "RMSNorm": {"normalized_shape": [6]},
    "GroupNorm": {"num_groups": 2, "num_channels": 4},
    "BatchNorm1d": {"num_features": 4},
    "BatchNorm2d": {"num_features": 4},
    "BatchNorm3d": {"num_features": 4},
    "InstanceNorm1d": {"num_features": 4, "affine": True, "track_running_stats": True},
    "InstanceNorm2d": {"num_features": 4, "affine": True, "track_running_stats": True},
    "InstanceNorm3d": {"num_features": 4, "affine": True, "track_running_stats": True},
    "MultiheadAttention": {"embed_dim": 8, "num_heads": 2, "add_bias_kv": True, "kdim": 5, "vdim": 6},
    "TransformerEncoderLayer": {"d_model": 8, "nhead": 2, "dim_feedforward": 12},
    "TransformerDecoderLayer": {"d_model": 8, "nhead": 2, "dim_feedforward": 12},
    "PReLU": {"num_parameters": 3},
}
LAYER_SELF_TEST_DTYPES = ("float32", "bfloat16")

_layer_self_test_cache: dict[str, bool] = {}


@functools.lru_cache(maxsize=32)
def _stack_recording(calls_json: str, dtype: str) -> Recording:
    from service.engine.layers import LayerCall, build_sequential
    from service.engine.rng import DTYPES

    calls = [LayerCall(name, type_, kwargs) for name, type_, kwargs in json.loads(calls_json)]
    return record(lambda _: build_sequential(calls, "meta", DTYPES[dtype])[0], None)


def stack_recording(calls: Sequence[Any], dtype: str) -> Recording:
    """The recorded build of a ``/v1/module`` stack (``LayerCall``s) in ``dtype`` (cached)."""
    return _stack_recording(json.dumps([[c.name, c.type, dict(c.kwargs)] for c in calls], sort_keys=True), dtype)


def stack_build(calls: Sequence[Any], dtype: str, seed: int) -> dict[str, torch.Tensor]:
    """The serial build of a stack on the CPU, as ``/v1/module`` makes it without overrides."""
    from service.engine.global_rng import seeded_global_rng
    from service.engine.layers import build_sequential
    from service.engine.maker import captured_warnings
    from service.engine.rng import DTYPES

    with seeded_global_rng(seed, torch.device("cpu")), captured_warnings(), torch.no_grad():
        module, _ = build_sequential(calls, "cpu", DTYPES[dtype])
    return module.state_dict()


def _check_layer(type_: str, kwargs: Mapping[str, Any]) -> bool:
    from service.engine.layers import LayerCall

    calls = [LayerCall("first", "Linear", {"in_features": 3, "out_features": 5}), LayerCall("layer", type_, kwargs)]
    for dtype in LAYER_SELF_TEST_DTYPES:
        whole = stack_build(calls, dtype, SELF_TEST_SEED)
        rec = stack_recording(calls, dtype)
        keys = list(rec.keys)
        if keys != list(whole):
            return False
        for chosen in [keys, *([k] for k in keys)]:
            sl = plan_slice(rec, chosen)
            if sl.whole:
                return False
            made = make(rec, sl, SELF_TEST_SEED)
            if not all(_same(made[k], whole[k]) for k in chosen):
                return False
    return True


def layer_self_test() -> dict[str, bool]:
    """``{layer type: passed}``: every key of a small stack with the type made alone equals the
    serial build, byte for byte, in float32 and bfloat16. A type that fails (or has no test call)
    is served by the whole build. Cached."""
    from service.engine.layers import LAYER_CLASSES, PARAMETER_FREE

    with _self_test_lock:
        if not _layer_self_test_cache:
            for type_ in LAYER_CLASSES:
                if type_ in PARAMETER_FREE:
                    continue  # no tensors: nothing to make
                try:
                    ok = type_ in LAYER_SELF_TEST_CALLS and _check_layer(type_, LAYER_SELF_TEST_CALLS[type_])
                except Exception:  # noqa: BLE001 - any failure of the fast path disables it
                    ok = False
                _layer_self_test_cache[type_] = ok
        return dict(_layer_self_test_cache)


def layer_usable(types: Sequence[str]) -> bool:
    passed = layer_self_test()
    return all(passed.get(t, _parameter_free(t)) for t in types)


def _parameter_free(type_: str) -> bool:
    from service.engine.layers import PARAMETER_FREE

    return type_ in PARAMETER_FREE
