"""The options the ``initsvc`` client commands share (where the service is, where the answer
goes), and the parsers that turn what was typed into request values: shapes, ``KEY=VALUE`` scheme
parameters and gains. A bad value raises ``click.BadParameter``, which names the option.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def client_options(command: F) -> F:
    """``--url``, ``--api-key``, ``--timeout`` and ``--retries``: where the service is and how to
    call it."""
    options = [
        click.option("--url", envvar="INITSVC_URL", default="http://127.0.0.1:8000", show_default=True,
                     show_envvar=True, help="Base URL of the service."),
        click.option("--api-key", envvar="INITSVC_API_KEY", default=None, show_default=False, show_envvar=True,
                     help="API key, sent as 'Authorization: Bearer'."),
        click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Seconds to wait for the server (the first byte of a large tensor takes a while)."),
        click.option("--retries", default=3, show_default=True, type=click.IntRange(0, 100),
                     help="Retries after 429/503, waiting as Retry-After says."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def answer_options(*, default: str | None, show_default: str | bool, help: str) -> Callable[[F], F]:
    """``-o/--output`` (with this ``default`` and ``help``), ``--json`` and ``-q``: where a command
    that downloads puts the answer, or its summary instead."""

    def add(command: F) -> F:
        options = [
            click.option("-o", "--output", default=default, show_default=show_default, metavar="FILE", help=help),
            click.option("--json", "as_json", is_flag=True, default=False, show_default=True,
                         help="Print the stats, request and provenance as JSON instead of downloading the data."),
            click.option("-q", "--quiet", is_flag=True, default=False, show_default=True,
                         help="No progress bar or summary."),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return add


def parse_shape(ctx: click.Context, values: tuple[str, ...], hint: str = "'--shape'") -> list[int]:
    """``256 784``, ``256,784`` or ``256x784`` (also mixed) -> ``[256, 784]``; a lone ``''`` is a
    0-d shape (``[]``). Every other part must be a non-negative integer: ``4 x`` or ``4,,5`` is an
    error, not ``[4]`` or ``[4, 5]``."""
    if values == ("",):
        return []
    dims: list[int] = []
    for value in values:
        for part in value.replace("x", ",").split(","):
            part = part.strip()
            if not part.isdigit():
                raise click.BadParameter(
                    f"dimensions are non-negative integers, as in 256 784, 256,784 or 256x784 ('' for a 0-d "
                    f"tensor); got {value!r}", ctx=ctx, param_hint=hint)
            dims.append(int(part))
    return dims


def parse_value(text: str) -> Any:
    """A JSON number when it is one (``2.5``, ``-1``, ``1e-3``), else the text (``fan_out``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float) and not isinstance(value, bool) else text


def parse_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, as in a=2.236 or mode=fan_out; got {item!r}", ctx, param)
        params[key.strip()] = parse_value(value.strip())
    return params


def parse_scalar(text: str) -> Any:
    """A JSON scalar when it is one (``2`` int, ``0.1`` float, ``true`` bool, ``null``), else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(value, list | dict) else value


def parse_config(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """``--config n_layer=2 --config bias=false`` -> ``{"n_layer": 2, "bias": False}``."""
    config = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, as in n_layer=2 or activation=gelu; got {item!r}", ctx, param)
        config[key.strip()] = parse_scalar(value.strip())
    return config


def parse_keys(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """``a.weight,b.bias`` -> ``["a.weight", "b.bias"]``."""
    if value is None:
        return None
    keys = [key.strip() for key in value.split(",") if key.strip()]
    if not keys:
        raise click.BadParameter("expected state_dict keys separated by commas, as in wte.weight,lm_head.weight",
                                 ctx, param)
    return keys


def parse_gain(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``1.41`` (a number), ``relu`` or ``leaky_relu:0.2`` (calculate_gain(nonlinearity, param))."""
    if value is None:
        return None
    number = parse_value(value)
    if not isinstance(number, str):
        return number
    name, sep, extra = value.partition(":")
    spec: dict[str, Any] = {"nonlinearity": name}
    if sep:
        spec["param"] = parse_value(extra)
        if isinstance(spec["param"], str):
            raise click.BadParameter(f"the part after ':' is the nonlinearity's parameter, a number; got {extra!r}",
                                     ctx, param)
    return spec


def parse_key_slices(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, Any] | None:
    """``("lm_head.weight=0:128,:",)`` -> ``{"lm_head.weight": [[0, 128], None]}``."""
    from service.client._requests import normalize_slice

    if not value:
        return None
    out: dict[str, Any] = {}
    for item in value:
        key, sep, text = item.rpartition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=START:STOP,...; got {item!r}", ctx, param)
        try:
            out[key] = normalize_slice(text, ())
        except ValueError as exc:
            raise click.BadParameter(f"{key}: {exc}", ctx, param) from None
    return out
