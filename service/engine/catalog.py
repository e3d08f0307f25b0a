"""The scheme table behind ``/v1/schemes``: shape rule, formula, reference call, expected stats,
parameters and defaults, all read from the registry (``service.scheme_table``).

The parameters' JSON schema (types, descriptions, constraints) is the request schemas' at the
API layer; ``tests/test_scheme_tables.py`` pins those schemas to the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.scheme_table import SCHEME_TABLE, Param


@dataclass(frozen=True)
class CatalogEntry:
    formula: str
    reference: str
    expected: str
    portable: bool = True  # has a portable-v1 form
    parameters: tuple[Param, ...] = ()


CATALOG: dict[str, CatalogEntry] = {
    name: CatalogEntry(row.formula, row.reference, row.expected, row.portable, row.params)
    for name, row in SCHEME_TABLE.items()
}


def shape_rule(scheme: str) -> str:
    return SCHEME_TABLE[scheme].shape.text


def defaults(scheme: str) -> dict[str, object]:
    """Parameter -> default (``None`` for a required one), in torch's argument order."""
    return SCHEME_TABLE[scheme].defaults
