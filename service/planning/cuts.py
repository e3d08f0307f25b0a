"""``tensors`` and ``slice`` on the keys of a state_dict (``/v1/model`` and ``/v1/module``).

``tensors`` keeps the keys asked for, in the order asked; an unknown key is a 422 naming
``tensors.<i>`` with a "did you mean" and some valid keys. ``slice`` (``{key: [[start, stop] |
null, ...]}``) answers exactly ``full[...]`` of each key named.

Each key must exist (and be in ``tensors`` when it is given), its bounds within its shape; a 422
names ``slice.<key>``. When the keys can be made alone (``presets/accounting.py``), a key whose
last op is one plain ``uniform_``/``normal_`` draw over its storage has only that part generated
(``"direct"``); the others are made alone, or by the whole build, and cut (``"cut"``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from service.errors import RecipeError
from service.planning.tensors import check_slice, sliced_shape
from service.presets import accounting
from service.presets.accounting import Slice
from service.presets.recording import Recording

Bounds = tuple[tuple[int, int], ...]


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


E = TypeVar("E")
K = TypeVar("K", bound=Keyed)

# How many keys a "no such key" message lists.
LISTED_KEYS = 20


def no_such_key(key: str, keys: Sequence[str], owner: str) -> str:
    """What an unknown key is: ``owner`` ("the model", "the module") has no such key; the closest
    ones, and the first ``LISTED_KEYS`` keys."""
    close = difflib.get_close_matches(key, list(keys), n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    more = f", and {len(keys) - LISTED_KEYS} more" if len(keys) > LISTED_KEYS else ""
    return f"{owner} has no state_dict key {key!r}; {hint}keys: {', '.join(keys[:LISTED_KEYS]) or 'none'}{more}"


def select_keys(entries: list[K], tensors: Sequence[str] | None, owner: str) -> list[K]:
    """The entries asked for, in the order asked (all, in state_dict order, without ``tensors``).
    ``entries`` have ``key``."""
    if tensors is None:
        return entries
    by_key = {e.key: e for e in entries}
    seen: set[str] = set()
    chosen = []
    for i, key in enumerate(tensors):
        if key not in by_key:
            raise RecipeError.at(("tensors", i), no_such_key(key, list(by_key), owner))
        if key in seen:
            raise RecipeError.at(("tensors", i), f"{key!r} is listed more than once")
        seen.add(key)
        chosen.append(by_key[key])
    return chosen


def check_cuts(
    raw: Mapping[str, Any] | None, entries: Sequence[Any], tensors: Sequence[str] | None,
    no_such_key: Callable[[str], str],
) -> dict[str, Bounds]:
    """``slice``: each key in the state_dict (and in ``tensors`` when given), bounds within its
    shape. ``entries`` have ``key`` and ``shape``; ``no_such_key(key)`` says what an unknown key is."""
    if not raw:
        return {}
    by_key = {e.key: e for e in entries}
    cuts = {}
    for key, bounds in raw.items():
        if key not in by_key:
            raise RecipeError.at(("slice", key), no_such_key(key))
        if tensors is not None and key not in tensors:
            raise RecipeError.at(("slice", key), f"{key!r} is not in 'tensors'; slice only keys the answer has")
        checked = check_slice(bounds, by_key[key].shape, ("slice", key))
        if checked is None:  # the schema allows no null here; a null slice of a key is no slice
            raise RecipeError.at(("slice", key), "a slice needs one [start, stop] or null per dimension; got null")
        cuts[key] = checked
    return cuts


def cut_entries(entries: list[E], cuts: Mapping[str, Bounds]) -> list[E]:
    """The entries with each cut key's shape replaced by its slice's."""
    if not cuts:
        return entries
    return [
        dataclasses.replace(e, shape=sliced_shape(e.shape, cuts[e.key])) if e.key in cuts else e  # type: ignore[attr-defined,type-var]
        for e in entries
    ]


@dataclass(frozen=True)
class CutPlan:
    """How a job with ``slice`` makes its keys alone: ``slice`` (the keys not ``direct``, made whole
    and cut; None: none), ``direct`` (only their part generated), what that allocates at most."""

    slice: Slice | None
    direct: frozenset[str]
    direct_bytes: int
    provenance: dict[str, Any]

    @property
    def built(self) -> int:
        return (self.slice.nbytes if self.slice is not None else 0) + self.direct_bytes


def plan_cuts(rec: Recording, keys: Sequence[str], cuts: Mapping[str, Bounds]) -> CutPlan | str:
    """The keys made alone from ``rec``, the sliceable cut keys generating only their part; or why
    some key needs the whole build."""
    direct = frozenset(k for k in cuts if accounting.sliceable(rec, k) is not None)
    rest = [k for k in keys if k not in direct]
    sliced = accounting.plan_slice(rec, rest) if rest else None
    if sliced is not None and sliced.whole:
        return sliced.reason
    slices = {k: "direct" if k in direct else "cut" for k in cuts}
    # at most the whole key, and its index
    direct_bytes = sum(2 * rec.keys[k].numel * rec.keys[k].dtype.itemsize for k in direct)
    return CutPlan(sliced, direct, direct_bytes, {"path": "jumped", "slices": slices})


def whole_provenance(reason: str | None, cuts: Mapping[str, Bounds]) -> dict[str, Any]:
    """``provenance.generation`` when the whole build is made and every sliced key cut from it."""
    return {"path": "whole", "reason": reason, "slices": {k: "cut" for k in cuts}}
