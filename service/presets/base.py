"""What a model preset is: a reference class, its config fields, and a replay of its build and init.

A preset answers what ``torch.manual_seed(seed); Reference(**config).state_dict()`` gives, without
importing the reference library. Its ``build(config)`` constructs plain ``torch.nn`` modules whose
``state_dict()`` has the reference's keys, in the reference's order, drawing from torch's global
generators exactly as the reference does: every construction draw (a layer's default
``reset_parameters``, a ``torch.randn`` in a constructor) on a tensor of the same shape and in the
same order, then the reference's own init pass in its visiting order. The caller seeds and
isolates the global generators (``engine.global_rng.seeded_global_rng``) and picks the device:
``meta`` for planning (keys and shapes, nothing allocated), CPU for the real thing.

Draw counts are never computed from guessed formulas: each draw is replayed on a tensor of the
real shape, because torch's CPU ``normal_`` uses another algorithm under 16 elements and
``trunc_normal_`` consumes a data-dependent amount.

One file per preset defines a ``Preset`` (see ``service/presets/__init__.py`` for the table).
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from service.engine.dtypes import NAMES

# JSON types a config field may take. "json" passes any JSON value through unchecked: fields that do
# not change the state_dict (rope_scaling, id2label, ...) and that the reference merely stores.
FIELD_TYPES = ("int", "float", "bool", "str", "json")


class ConfigError(ValueError):
    """A config the reference would refuse (or that names no field of it): ``field`` and why."""

    def __init__(self, field: str | None, msg: str):
        self.field, self.msg = field, msg
        super().__init__(f"{field}: {msg}" if field else msg)


@dataclass(frozen=True)
class Field:
    """One config field: the reference's name, JSON type and default.

    ``nullable``: ``None`` is accepted (the reference's default may be ``None`` too).
    ``minimum``: the smallest accepted value of a number (sizes are >= 1).
    ``choices``: the only accepted values, when the reference allows a few.
    ``affects_weights``: False for fields that do not change the state_dict (dropout, activation
    names, token ids): accepted and echoed, documented as such.
    """

    name: str
    type: str
    default: Any
    doc: str = ""
    nullable: bool = False
    minimum: float | None = None
    choices: tuple[Any, ...] | None = None
    affects_weights: bool = True

    def __post_init__(self) -> None:
        assert self.type in FIELD_TYPES, self.type

    def check(self, value: Any) -> Any:
        """The value as the reference would take it, or ``ConfigError``. JSON booleans are never numbers."""
        if value is None:
            if self.nullable or self.type == "json":
                return None
            raise ConfigError(self.name, f"must be {self._kind()}, not null")
        if self.type == "json":
            return value
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ConfigError(self.name, f"must be a boolean (true or false); got {value!r}")
        elif self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
                    value = int(value)
                else:
                    raise ConfigError(self.name, f"must be an integer; got {value!r}")
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(self.name, f"must be a number; got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(self.name, f"must be finite; got {value!r}")
        elif self.type == "str" and not isinstance(value, str):
            raise ConfigError(self.name, f"must be a string; got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(self.name, f"must be one of {list(self.choices)}; got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(self.name, f"must be at least {self.minimum:g}; got {value!r}")
        return value

    def _kind(self) -> str:
        return {"int": "an integer", "float": "a number", "bool": "a boolean", "str": "a string"}.get(self.type, "a value")

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default, "nullable": self.nullable}
        if self.minimum is not None:
            d["minimum"] = int(self.minimum) if self.type == "int" else self.minimum
        if self.choices is not None:
            d["choices"] = list(self.choices)
        d["affects_weights"] = self.affects_weights
        if self.doc:
            d["doc"] = self.doc
        return d


def size(name: str, default: int, doc: str = "") -> Field:
    """A size field: an integer of at least 1."""
    return Field(name, "int", default, doc, minimum=1)


def inert(name: str, type: str, default: Any, doc: str = "", nullable: bool = False) -> Field:
    """A field the reference accepts that does not change the state_dict."""
    return Field(name, type, default, doc or "does not change the weights", nullable=nullable, affects_weights=False)


@dataclass(frozen=True)
class InitRule:
    """How the reference initializes the keys that match ``pattern`` (a regular expression matched
    against the whole key), in words, e.g. ``normal(0, 0.02)``."""

    pattern: str
    words: str


@dataclass(frozen=True)
class Preset:
    """A reference class and its replay.

    ``check(config) -> warnings``: the reference's own validation on a config with every field
    filled in (defaults included): ``ConfigError`` where the reference raises, and the text of what it
    merely warns about. ``build(config) -> nn.Module``: the replay, on the current default device,
    drawing from the global generators (the caller seeds and isolates them); its ``state_dict()`` is
    the answer.
    """

    name: str
    library: str
    reference: str  # the constructor call, e.g. "transformers.GPT2LMHeadModel(transformers.GPT2Config(**config))"
    versions: str  # the library versions whose bytes and key names this replay matches, e.g. ">=4.46,<6"
    fields: tuple[Field, ...]
    build: Callable[[Mapping[str, Any]], nn.Module]
    check: Callable[[Mapping[str, Any]], list[str]] = field(default=lambda config: [])
    rules: tuple[InitRule, ...] = ()
    doc: str = ""

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.fields}

    def resolve(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Every field filled in and checked, and the reference's warnings; ``ConfigError`` otherwise."""
        by_name = {f.name: f for f in self.fields}
        for name in config:
            if name not in by_name:
                close = difflib.get_close_matches(name, list(by_name), n=3)
                hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
                raise ConfigError(
                    name, f"{self.name} has no config field {name!r}; {hint}fields: {', '.join(by_name)}"
                )
        resolved = {f.name: f.check(config[f.name]) if f.name in config else f.default for f in self.fields}
        return resolved, list(self.check(resolved))

    def rule_for(self, key: str, config: Mapping[str, Any] | None = None) -> str | None:
        """The words of the first rule matching ``key``; with a resolved ``config``, a draw's
        arguments written with config fields are filled in (``normal(0, initializer_range or
        0.02)`` reads ``normal(0, 0.02)``), as is a rule that is a field's name alone."""
        for rule in self.rules:
            if re.fullmatch(rule.pattern, key):
                return rule.words if config is None else fill_rule(rule.words, config)
        return None


# A draw written in a rule, its arguments up to one level of nested parentheses.
_DRAW = re.compile(r"\b(normal|trunc_normal|uniform)\(((?:[^()]|\([^()]*\))*)\)")
_FUNCTIONS: dict[str, Callable[[float], float]] = {"sqrt": math.sqrt, "log": math.log}


def fill_rule(words: str, config: Mapping[str, Any]) -> str:
    """``words`` with each draw argument that is arithmetic over config fields (``+ - * /``,
    ``or``, ``sqrt``, ``log``) replaced by its value; anything else is left as written."""
    if isinstance(config.get(words), (int, float)) and not isinstance(config.get(words), bool):
        return f"{words} = {config[words]:g}"

    def draw(m: re.Match[str]) -> str:
        args = [_filled(a.strip(), config) for a in _split_args(m.group(2))]
        return f"{m.group(1)}({', '.join(args)})"

    return _DRAW.sub(draw, words)


def _split_args(text: str) -> list[str]:
    args, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            args.append(text[start:i])
            start = i + 1
    return [*args, text[start:]]


def _filled(arg: str, config: Mapping[str, Any]) -> str:
    if not re.search(r"[A-Za-z_]", arg) or "=" in arg:
        return arg
    try:
        value = _evaluate(ast.parse(arg, mode="eval").body, config)
    except (SyntaxError, ValueError, KeyError, TypeError, ZeroDivisionError, OverflowError):
        return arg
    return f"{value:g}"


def _evaluate(node: ast.AST, config: Mapping[str, Any]) -> float:
    """Arithmetic over config fields; ``ValueError`` for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name):
        value = config[node.id]
        if value is None:
            return 0.0  # as ``or`` reads it: falls through to the default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(node.id)
        return float(value)
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        values = [_evaluate(v, config) for v in node.values]
        return next((v for v in values if v), values[-1])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, config)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left, right = _evaluate(node.left, config), _evaluate(node.right, config)
        ops: dict[type, Callable[[float, float], float]] = {
            ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
            ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
        }
        return ops[type(node.op)](left, right)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and len(node.args) == 1 and not node.keywords):
        return _FUNCTIONS[node.func.id](_evaluate(node.args[0], config))
    raise ValueError(ast.dump(node))


@dataclass(frozen=True)
class PresetEntry:
    """One state_dict entry of a preset: key, shape, dtype name, parameter or buffer, and whether it
    shares its storage with an earlier key (tied weights)."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    parameter: bool
    tied_to: str | None
    itemsize: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize


def entries_of(module: nn.Module) -> list[PresetEntry]:
    """Every ``state_dict()`` entry of ``module`` in order; tied entries name the first key sharing them."""
    parameters = {key for key, _ in module.named_parameters(remove_duplicate=False)}
    first: dict[int, str] = {}
    out = []
    for key, t in module.state_dict(keep_vars=True).items():
        ident = id(t)
        tied = first.get(ident)
        first.setdefault(ident, key)
        out.append(PresetEntry(key, tuple(t.shape), NAMES[t.dtype], key in parameters, tied, t.element_size()))
    return out


def summary(entries: Sequence[PresetEntry]) -> dict[str, int]:
    """``parameters`` (tied tensors once), ``elements`` (every key), ``bytes`` (every key, as stored)."""
    return {
        "parameters": sum(e.numel for e in entries if e.parameter and e.tied_to is None),
        "elements": sum(e.numel for e in entries),
        "bytes": sum(e.nbytes for e in entries),
    }
