"""Every reader of the scheme registry (``service.scheme_table``) is pinned to it here: the request
schemas (names, JSON types, defaults, required parameters, constraints), torch's own signatures,
the portable-v1 planner's table, the engine's fillers and shape checks, the ``/v1/schemes``
catalog and the expected-moment describers."""

from __future__ import annotations

import asyncio
import inspect
from typing import get_args

import pytest
import torch
from pydantic import ValidationError

from service import formulas
from service.api.routes.catalog import list_schemes
from service.engine import catalog, checks, distributions, schemes, variance
from service.errors import RecipeError
from service.portable import recipes as portable
from service.schemas.recipes import RECIPE_MODELS, Nonlinearity, recipe_params
from service.scheme_table import SCHEME_TABLE, ShapeRule, check_covers

# A valid value for each required parameter (the registry marks them required; no default).
_REQUIRED_SAMPLES = {"val": 0.5, "sparsity": 0.5}
_CONSTRAINTS = {"minimum": "minimum", "exclusive_minimum": "exclusiveMinimum", "maximum": "maximum"}


def _full_params(scheme: str) -> dict[str, object]:
    return {n: _REQUIRED_SAMPLES[n] if d is None else d for n, d in SCHEME_TABLE[scheme].defaults.items()}


def test_portable_schemes_are_the_request_schemes():
    assert set(portable.SCHEMES) == set(RECIPE_MODELS) == set(SCHEME_TABLE)


def test_portable_defaults_and_required_parameters_are_the_schemas():
    for scheme, model in RECIPE_MODELS.items():
        defaults, _rule = portable._SCHEMES[scheme]
        fields = {name: f for name, f in model.model_fields.items() if name != "scheme"}
        assert set(defaults) == set(fields), scheme
        for name, field in fields.items():
            if field.is_required():
                assert defaults[name] is None, (scheme, name)
            else:
                assert defaults[name] == field.default, (scheme, name)


def test_the_portable_table_is_the_registry():
    assert portable.SCHEMES == tuple(SCHEME_TABLE)
    for name, row in SCHEME_TABLE.items():
        defaults, rule = portable._SCHEMES[name]
        assert defaults == row.defaults and rule is row.shape, name
    assert portable.VARIANCE_MODES == variance.VARIANCE_MODES
    assert portable.DISTRIBUTIONS == variance.DISTRIBUTIONS


@pytest.mark.parametrize("scheme", list(SCHEME_TABLE))
def test_the_request_schema_is_the_registry_row(scheme):
    row = SCHEME_TABLE[scheme]
    schema = RECIPE_MODELS[scheme].model_json_schema()
    props = {k: v for k, v in schema["properties"].items() if k != "scheme"}
    assert tuple(props) == row.param_names
    assert set(schema["required"]) - {"scheme"} == {p.name for p in row.params if p.required}
    for param in row.params:
        prop = props[param.name]
        if param.required:
            assert "default" not in prop, param.name
        else:
            assert prop["default"] == param.default and type(prop["default"]) is type(param.default), param.name
        number = prop
        if param.type == "gain":
            number, spec = prop["anyOf"]
            assert spec["properties"]["nonlinearity"]["enum"] and set(spec["required"]) == {"nonlinearity"}
        expected_type = {"gain": "number", "number": "number", "integer": "integer", "string": "string"}[param.type]
        assert number["type"] == expected_type, param.name
        for attr, key in _CONSTRAINTS.items():
            assert number.get(key) == getattr(param, attr), (param.name, key)
        if param.type == "string":
            assert param.choices is not None and set(prop["enum"]) == set(param.choices), param.name
        else:
            assert param.choices is None and "enum" not in prop


@pytest.mark.parametrize("scheme", list(SCHEME_TABLE))
def test_the_request_schema_validates_as_the_registry_says(scheme):
    model = RECIPE_MODELS[scheme]
    full = _full_params(scheme)
    assert recipe_params(model.model_validate({"scheme": scheme, **full})) == full
    for param in SCHEME_TABLE[scheme].params:
        if param.case_free:
            upper = model.model_validate({"scheme": scheme, **full, param.name: str(param.default).upper()})
            assert getattr(upper, param.name) == param.default
        for order, strict in ((param.at_least, False), (param.above, True)):
            if order is None:
                continue
            low = full[order]
            with pytest.raises(ValidationError):
                model.model_validate({"scheme": scheme, **full, param.name: low - 1})
            equal = {"scheme": scheme, **full, param.name: low}
            if strict:
                with pytest.raises(ValidationError):
                    model.model_validate(equal)
            else:
                model.model_validate(equal)
        if param.required:
            without = {k: v for k, v in full.items() if k != param.name}
            with pytest.raises(ValidationError):
                model.model_validate({"scheme": scheme, **without})


def test_the_registrys_choices_are_the_shared_formulas():
    assert set(get_args(Nonlinearity)) == set(formulas.NONLINEARITIES)
    nonlinearity = {p.choices for row in SCHEME_TABLE.values() for p in row.params if p.name == "nonlinearity"}
    assert nonlinearity == {formulas.NONLINEARITIES}


@pytest.mark.parametrize("scheme", [n for n, row in SCHEME_TABLE.items() if row.torch_name])
def test_the_parameters_are_torchs(scheme):
    """Names, order and defaults of the registry's parameters are those of the torch function."""
    row = SCHEME_TABLE[scheme]
    module, _, fn = row.torch_name.rpartition(".")
    assert module == "torch.nn.init" and row.reference.startswith(f"{row.torch_name}(")
    signature = inspect.signature(getattr(torch.nn.init, fn))
    params = [p for p in signature.parameters.values() if p.name not in ("tensor", "generator")]
    assert tuple(p.name for p in params) == row.param_names
    for torch_param, param in zip(params, row.params, strict=True):
        if param.required:
            assert torch_param.default is inspect.Parameter.empty, param.name
        else:
            assert torch_param.default == param.default, param.name


def test_the_engine_fillers_and_moments_are_keyed_by_the_registry():
    assert set(schemes.SCHEMES) == set(SCHEME_TABLE)
    for name, row in SCHEME_TABLE.items():
        assert schemes.SCHEMES[name].shape_rule is row.shape
        assert schemes.SCHEMES[name].random == row.random
    assert set(distributions._DESCRIBERS) == set(SCHEME_TABLE)
    with pytest.raises(RuntimeError, match="missing \\['zeros'\\]"):
        check_covers({n: None for n in SCHEME_TABLE if n != "zeros"}, "a table")
    with pytest.raises(RuntimeError, match="not schemes \\['zero'\\]"):
        check_covers({**dict.fromkeys(SCHEME_TABLE), "zero": None}, "a table")


def test_a_scheme_that_draws_nothing_has_no_draws_in_the_registry():
    for name, row in SCHEME_TABLE.items():
        if not row.random:
            assert row.expected.startswith(("point mass", "null")), name


def _shape(ndim: int) -> tuple[int, ...]:
    return (2,) * ndim


@pytest.mark.parametrize("scheme", list(SCHEME_TABLE))
def test_engine_and_portable_shape_checks_follow_the_registry_rule(scheme):
    row = SCHEME_TABLE[scheme]
    params = recipe_params(RECIPE_MODELS[scheme].model_validate({"scheme": scheme, **_full_params(scheme)}))
    for ndim in range(7):
        shape = _shape(ndim)
        try:
            checks.check_recipe(scheme, params, shape, "float32")
            engine_refused = False
        except RecipeError as exc:
            engine_refused = any(p.loc == ("shape",) for p in exc.problems)
        try:
            portable.resolve_recipe({"scheme": scheme, **_full_params(scheme)}, shape)
            portable_refused = False
        except portable.PortableRecipeError as exc:
            portable_refused = "shape" in str(exc)
        except portable.PortableUnsupportedError:
            portable_refused = False
        assert engine_refused == portable_refused == (not row.shape.allows(ndim)), (scheme, ndim)


def test_shape_rules_are_the_four_kinds():
    kinds = {(r.min_dims, r.max_dims, r.text) for r in {row.shape for row in SCHEME_TABLE.values()}}
    assert kinds == {(0, None, "any"), (2, 2, "exactly 2-D"), (2, None, "at least 2-D"), (3, 5, "3-, 4- or 5-D")}
    assert ShapeRule(3, 5).allows(5) and not ShapeRule(3, 5).allows(6) and not ShapeRule(2, 2).allows(3)


def test_the_catalog_and_v1_schemes_answer_read_the_registry():
    answer = asyncio.run(list_schemes())["schemes"]
    assert list(answer) == list(RECIPE_MODELS)
    for name, row in SCHEME_TABLE.items():
        entry = catalog.CATALOG[name]
        assert (entry.formula, entry.reference, entry.expected, entry.portable) == (
            row.formula, row.reference, row.expected, row.portable,
        )
        assert catalog.shape_rule(name) == row.shape.text
        assert catalog.defaults(name) == row.defaults
        listed = answer[name]
        assert listed["formula"] == row.formula and listed["reference"] == row.reference
        assert listed["expected"] == row.expected and listed["shape_rule"] == row.shape.text
        assert listed["rng"] == (["torch", "portable-v1"] if row.portable else ["torch"])
        assert [p["name"] for p in listed["parameters"]] == list(row.param_names)
        for shown, param in zip(listed["parameters"], row.params, strict=True):
            assert shown["required"] == param.required
            assert shown.get("default") == (None if param.required else param.default)
