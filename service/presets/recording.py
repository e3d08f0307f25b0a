"""A preset's build, recorded on ``meta``: every operation that writes a parameter's or buffer's
storage, in order, with what it reads and, for each draw from torch's global generator, what it
draws. Nothing is allocated and nothing is drawn.

A ``TorchDispatchMode`` sees each ATen call below autograd. An op is recorded when it writes a
storage (a ``Tensor(a!)`` argument, or a return that aliases no input: a fresh storage); view ops
(``select``, ``unsqueeze``, ``alias``, a ``Parameter`` wrapping a tensor) write nothing and are
not, since every tensor an op touches is recorded as its storage plus view geometry. An op with a
``Generator`` argument draws from the global stream; it is

* **accounted** when its draws are a function of its shape and dtype: ``uniform_``, ``normal_``,
  ``rand``, ``randn`` on float32/float64/float16/bfloat16 (``engine/draws.py``);
* **unaccountable** when what it consumes depends on the values drawn, but it can be run on its
  own from a known state: torch's ``nn.init.trunc_normal_`` (rejection sampling since torch
  2.12: ``normal_`` or ``uniform_`` again until every value is accepted). It is a no-op on
  ``meta`` (``if tensor.is_meta: return``), so it is seen at the Python level: a
  ``TorchFunctionMode`` sees that ``is_meta`` asked from its frame, and records the call with its
  arguments;
* **opaque** otherwise: any other RNG op (``random_``, ``bernoulli_``, ``randperm``, ...), a draw
  from an explicit generator, ``orthogonal_`` (a QR of drawn values) and ``sparse_`` (no-ops on
  ``meta`` too), and a storage first seen as an input (made outside dispatch: ``torch.tensor(x)``
  keeps no value on ``meta``). Keys that depend on an opaque op are made by the whole build.

Longer than the ~300 lines most modules keep to: the dispatch-mode recorder and the op model it produces are one mechanism, read together.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from service.engine.draws import DTYPES
from service.engine.draws import Op as Law

aten = torch.ops.aten

# Ops that overwrite every element of their first argument without reading it.
OVERWRITE = {
    aten.uniform_.default, aten.normal_.default, aten.fill_.Scalar, aten.fill_.Tensor, aten.zero_.default,
    aten.copy_.default,
}
# Accounted RNG ops: (law, fresh output?) -- factories draw into a new tensor as empty().op_().
ACCOUNTED: dict[Any, tuple[Law, bool]] = {
    aten.uniform_.default: ("uniform", False),
    aten.normal_.default: ("normal", False),
    aten.rand.default: ("uniform", True),
    aten.randn.default: ("normal", True),
}
# torch.nn.init functions that return at once on meta tensors: what each becomes in the record.
_META_SILENT = {
    torch.nn.init._no_grad_trunc_normal_.__code__: "trunc_normal",
    torch.nn.init.orthogonal_.__code__: "opaque",
    torch.nn.init.sparse_.__code__: "opaque",
    torch.nn.init.dirac_.__code__: "opaque",
}
# A CPU tensor first seen as an input is kept as a constant up to this many bytes.
CONSTANT_BYTES = 1 << 16


@dataclass(frozen=True)
class Ref:
    """A tensor as a view of a recorded storage: ``sid``, geometry and dtype."""

    sid: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for s in self.size:
            n *= s
        return n

    def contiguous(self) -> bool:
        expected = 1
        for size, stride in reversed(list(zip(self.size, self.stride, strict=True))):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True


@dataclass(frozen=True)
class Storage:
    sid: int
    numel: int
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass
class Op:
    """One recorded operation. ``kind``: "aten" (``func`` an OpOverload), "trunc_normal",
    "constant" (``args[0]`` the value), "opaque". ``law`` is set on accounted draws
    ("uniform"/"normal"), ``target`` on every draw (the tensor filled)."""

    index: int
    kind: str
    func: Any
    args: tuple
    kwargs: dict
    reads: frozenset[int]
    writes: frozenset[int]
    kills: frozenset[int]  # storages whose previous content this op overwrites without reading
    outputs: tuple[tuple[int, Ref], ...] = ()  # (position in the flattened result, fresh storage)
    law: Law | None = None
    target: Ref | None = None
    draws_rng: bool = False
    reason: str = ""

    @property
    def draw_target(self) -> Ref:
        """``target``, on an op known to fill one (a draw of an accounted dtype, ``trunc_normal_``)."""
        if self.target is None:
            raise ValueError(f"op {self.index} ({self.kind}, {self.func}) fills no recorded tensor")
        return self.target

    @property
    def draw_law(self) -> Law:
        """``law``, on an op known to be an accounted draw."""
        if self.law is None:
            raise ValueError(f"op {self.index} ({self.kind}, {self.func}) is not an accounted draw")
        return self.law


@dataclass
class Recording:
    ops: list[Op] = field(default_factory=list)
    storages: dict[int, Storage] = field(default_factory=dict)
    keys: dict[str, Ref] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # torch's warnings during the recorded build


def _covers(ref: Ref, storage: Storage) -> bool:
    return ref.offset == 0 and ref.numel == storage.numel and ref.contiguous()


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.rec = Recording()
        self._sids: dict[int, int] = {}
        self._alive: list[torch.Tensor] = []  # keeps storages alive, so their addresses stay unique

    # --- storages and refs --------------------------------------------------------------------

    def ref(self, t: torch.Tensor, fresh: bool = False) -> Ref:
        st = t.untyped_storage()
        key = st._cdata
        sid = self._sids.get(key)
        if sid is None:
            sid = self._sids[key] = len(self._sids)
            self._alive.append(t)
            self.rec.storages[sid] = Storage(sid, st.nbytes() // max(t.dtype.itemsize, 1), t.dtype)
            if not fresh:
                self._source(t, sid)
        # The build runs on meta with concrete sizes (nothing is traced symbolically), so the
        # offset is a plain int; int() only narrows the SymInt in its declared type.
        return Ref(sid, tuple(t.shape), tuple(t.stride()), int(t.storage_offset()), t.dtype)

    def _source(self, t: torch.Tensor, sid: int) -> None:
        """A storage first seen as an input: a constant if its value is at hand, else opaque."""
        if t.device.type != "meta" and t.untyped_storage().nbytes() <= CONSTANT_BYTES:
            base = t.as_strided((self.rec.storages[sid].numel,), (1,), 0).clone()
            self._add("constant", None, (base,), {}, set(), {sid}, {sid})
        else:
            self._add("opaque", None, (), {}, set(), {sid}, {sid}, reason="a tensor made outside torch's dispatch")

    def _add(self, kind, func, args, kwargs, reads, writes, kills, **extra) -> Op:
        op = Op(len(self.rec.ops), kind, func, args, kwargs, frozenset(reads), frozenset(writes), frozenset(kills),
                **extra)
        self.rec.ops.append(op)
        return op

    # --- dispatch -----------------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.record(func, args, kwargs, out)
        return out

    def record(self, func, args, kwargs, out) -> None:
        schema = func._schema
        written: list[torch.Tensor] = []
        generator, has_generator = None, False
        positional = {a.name: i for i, a in enumerate(schema.arguments)}
        for a in schema.arguments:
            value = kwargs.get(a.name, args[positional[a.name]] if positional[a.name] < len(args) else None)
            if a.alias_info is not None and a.alias_info.is_write and isinstance(value, torch.Tensor):
                written.append(value)
            if "Generator" in str(a.type):
                has_generator, generator = True, value
        flat_out, _ = tree_flatten(out)
        fresh_pos = [
            i for i, (r, o) in enumerate(zip(schema.returns, flat_out, strict=True))
            if r.alias_info is None and isinstance(o, torch.Tensor)
        ] if len(schema.returns) == len(flat_out) else []
        if not written and not fresh_pos:
            return  # a view or a query: writes nothing
        kills: set[int] = set()
        reads: set[int] = set()
        overwritten = args[0] if func in OVERWRITE and args and isinstance(args[0], torch.Tensor) else None

        def to_ref(x):
            if isinstance(x, torch.Tensor):
                r = self.ref(x)
                if x is not overwritten:
                    reads.add(r.sid)
                return r
            if isinstance(x, torch.device):
                return _DEVICE
            return x

        rargs, rkwargs = tree_map(to_ref, tuple(args)), tree_map(to_ref, dict(kwargs))
        writes = {self.ref(w).sid for w in written}
        if overwritten is not None:
            r = self.ref(overwritten)
            if _covers(r, self.rec.storages[r.sid]):
                kills.add(r.sid)
        outputs = []
        for i in fresh_pos:
            r = self.ref(flat_out[i], fresh=True)
            outputs.append((i, r))
            writes.add(r.sid)
            kills.add(r.sid)
        extra: dict[str, Any] = {"outputs": tuple(outputs)}
        if has_generator or torch.Tag.nondeterministic_seeded in func.tags:
            extra["draws_rng"] = True
            law, factory = ACCOUNTED.get(func, (None, False))
            target = outputs[0][1] if factory and outputs else (rargs[0] if rargs and isinstance(rargs[0], Ref) else None)
            extra["target"] = target
            if generator is not None:
                return self._add_opaque(reads, writes, kills, f"{func} draws from an explicit generator", extra)
            if law is None:
                return self._add_opaque(reads, writes, kills, f"no draw accounting for {func}", extra)
            if target is None or target.dtype not in DTYPES:
                return self._add_opaque(reads, writes, kills, f"{func} on an unaccounted dtype", extra)
            extra["law"] = law
        self._add("aten", func, rargs, rkwargs, reads, writes, kills, **extra)

    def _add_opaque(self, reads, writes, kills, reason, extra) -> None:
        self._add("opaque", None, (), {}, reads, writes, kills, reason=reason, **extra)

    # --- torch.nn.init functions that do nothing on meta -----------------------------------------

    def silent(self, frame) -> None:
        """``frame`` asked ``tensor.is_meta``: if it is one of ``_META_SILENT``, record its call."""
        kind = _META_SILENT.get(frame.f_code)
        if kind is None:
            return
        t = frame.f_locals.get("tensor")
        if not isinstance(t, torch.Tensor) or not t.is_meta or t.numel() == 0:
            return  # a real tensor: its own ops are dispatched and recorded
        r = self.ref(t)
        extra: dict[str, Any] = {"draws_rng": True, "target": r}
        if kind == "opaque":
            return self._add_opaque({r.sid}, {r.sid}, set(), f"torch.nn.init.{frame.f_code.co_name} "
                                    "(a no-op on meta; not accounted)", extra)
        loc = frame.f_locals
        if loc.get("generator") is not None:
            return self._add_opaque({r.sid}, {r.sid}, set(), "trunc_normal_ with an explicit generator", extra)
        kills = {r.sid} if _covers(r, self.rec.storages[r.sid]) else set()
        self._add("trunc_normal", torch.nn.init.trunc_normal_, (r, loc["mean"], loc["std"], loc["a"], loc["b"]), {},
                  set() if kills else {r.sid}, {r.sid}, kills, **extra)


_IS_META = torch._C.TensorBase.__dict__["is_meta"]


class _MetaGetter(TorchFunctionMode):
    """Sees ``tensor.is_meta`` asked by a function of ``_META_SILENT`` (the line that makes it
    return at once on ``meta``) and hands the asking frame to the recorder."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__self__", None) is _IS_META:
            self.recorder.silent(sys._getframe(1))
        return func(*args, **(kwargs or {}))


class _MetaDevice:
    """Stands for the build's ``meta`` device in recorded arguments; replays put the CPU there."""

    def __repr__(self) -> str:
        return "<device>"


_DEVICE = _MetaDevice()


def record(build, config) -> Recording:
    """Run ``build(config)`` on ``meta`` and record it (see the module docstring)."""
    from service.engine.maker import captured_warnings

    rec = _Recorder()
    with captured_warnings() as warned, torch.device("meta"), torch.no_grad():
        with _MetaGetter(rec), rec:
            module = build(config)
        for key, t in module.state_dict(keep_vars=True).items():
            rec.rec.keys[key] = rec.ref(t)
    rec.rec.warnings = warned
    return rec.rec
