"""The commands that ask the service about itself: ``models``, ``schemes``, ``gain``, ``fans``,
``devices``."""

from __future__ import annotations

import re

import click

from service.cli.options import (
    CONTEXT,
    client_options,
    parse_shape,
    parse_value,
)
from service.cli.output import _client, _echo_json, _reports_errors


@click.command(context_settings=CONTEXT, epilog="Examples: initsvc models; initsvc models --json | jq '.models | keys'")
@click.option("--json", "as_json", is_flag=True, default=False, show_default=True,
              help="Print the server's whole answer (fields, defaults, docs) as JSON.")
@client_options
@_reports_errors
def models(as_json: bool, url: str, api_key: str | None, timeout: float, retries: int) -> None:
    """List the model presets: name, reference, library versions and the default config's size."""
    with _client(url, api_key, timeout, retries) as client:
        answer = client._models_answer()
    if as_json:
        _echo_json(answer)
        return
    rows = [("NAME", "REFERENCE", "VERSIONS", "PARAMETERS")]
    for preset, entry in answer.get("models", {}).items():
        count = (entry.get("default_config") or {}).get("parameters")
        rows.append((preset, entry.get("reference") or "-", entry.get("versions") or "-",
                     f"{count:,}" if isinstance(count, int) else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3].rjust(10))


@click.command(context_settings=CONTEXT, epilog="Example: initsvc schemes --json | jq '.kaiming_uniform'")
@click.option("--json", "as_json", is_flag=True, default=False, show_default=True, help="Print the catalog as JSON.")
@client_options
@_reports_errors
def schemes(as_json: bool, url: str, api_key: str | None, timeout: float, retries: int) -> None:
    """List the init schemes with their parameters (defaults) and shape rules."""
    with _client(url, api_key, timeout, retries) as client:
        catalog = client.schemes()
    if as_json:
        _echo_json(catalog)
        return
    width = max(map(len, catalog), default=0)
    for name, entry in catalog.items():
        params = " ".join(
            f"{p['name']}=<required>" if p.get("required") else f"{p['name']}={p.get('default')}"
            for p in entry.get("parameters", [])
        )
        click.echo(f"{name:<{width}}  {params or '-'}  [{entry.get('shape_rule', 'any')}]")


class _GainCommand(click.Command):
    """``gain``: a negative PARAM typed alone (``leaky_relu -0.2``) reads as an option to click;
    the error says how to give it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            if re.fullmatch(r"-[0-9.].*", exc.option_name):
                raise click.UsageError(
                    "a negative PARAM goes after a colon or --param: leaky_relu:-0.2 or leaky_relu --param -0.2", ctx
                ) from None
            raise


@click.command(cls=_GainCommand, context_settings=CONTEXT,
               epilog="Examples: initsvc gain relu; initsvc gain leaky_relu 0.2; initsvc gain leaky_relu:-0.2")
@click.argument("nonlinearity")
@click.argument("param_arg", metavar="[PARAM]", required=False)
@click.option("--param", type=float, default=None, show_default="leaky_relu: 0.01",
              help="The nonlinearity's parameter (leaky_relu's negative slope); also given as PARAM or NAME:PARAM.")
@client_options
@_reports_errors
def gain(nonlinearity: str, param_arg: str | None, param: float | None, url: str, api_key: str | None,
         timeout: float, retries: int) -> None:
    """Print torch.nn.init.calculate_gain(NONLINEARITY, PARAM): 'relu', 'leaky_relu 0.2' or
    'leaky_relu:0.2'."""
    ctx = click.get_current_context()
    name, sep, after = nonlinearity.partition(":")
    given = [value for value in (after if sep else None, param_arg) if value is not None]
    values = [parse_value(value) for value in given] + ([param] if param is not None else [])
    if len(values) > 1:
        raise click.UsageError("give the parameter once: NAME PARAM, NAME:PARAM or --param", ctx)
    if any(isinstance(value, str) for value in values):
        raise click.BadParameter(f"the nonlinearity's parameter is a number; got {given[0]!r}", ctx,
                                 param_hint="PARAM")
    with _client(url, api_key, timeout, retries) as client:
        click.echo(repr(client.gain(name, values[0] if values else None)))


@click.command(context_settings=CONTEXT, epilog="Examples: initsvc fans 64 3 7 7; initsvc fans 256,784")
@click.argument("shape", nargs=-1, required=True)
@client_options
@_reports_errors
def fans(shape: tuple[str, ...], url: str, api_key: str | None, timeout: float, retries: int) -> None:
    """Print fan_in, fan_out and receptive field of a weight SHAPE [out, in, *kernel]."""
    dims = parse_shape(click.get_current_context(), shape, "'SHAPE'")
    with _client(url, api_key, timeout, retries) as client:
        answer = client.fans(dims)
    click.echo(" ".join(f"{key}={value}" for key, value in answer.items()))


@click.command(context_settings=CONTEXT, epilog="Example: INITSVC_URL=http://gpu-box:8000 initsvc devices")
@client_options
@_reports_errors
def devices(url: str, api_key: str | None, timeout: float, retries: int) -> None:
    """Print the server's devices, which one 'auto' means, its torch version and limits (JSON)."""
    with _client(url, api_key, timeout, retries) as client:
        _echo_json(client.devices())
