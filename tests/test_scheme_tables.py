"""The portable-v1 core keeps its own scheme table (it installs without pydantic), so it is pinned
here against the request schemas: the same schemes, the same parameters, the same defaults, and the
same required parameters."""

from __future__ import annotations

from service.portable import recipes as portable
from service.schemas.recipes import RECIPE_MODELS


def test_portable_schemes_are_the_request_schemes():
    assert set(portable.SCHEMES) == set(RECIPE_MODELS)


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
