"""The ``initsvc`` commands that call a running service: fetch, module, model, models, schemes,
gain, fans and devices. Each builds an ``InitClient``, asks, and writes the answer: a safetensors file streamed to
disk behind a progress bar, or text and JSON on stdout. A service error prints ``ErrorName:
detail`` on one line and exits 1, without a traceback. None of them imports torch.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, get_args

import click

from service.cli_options import (
    CONTEXT,
    F,
    answer_options,
    client_options,
    parse_config,
    parse_gain,
    parse_keys,
    parse_params,
    parse_shape,
    parse_value,
)
from service.schemas.recipes import RECIPE_MODELS
from service.schemas.requests import SEED_MAX, DType, Rng


def _reports_errors(command: F) -> F:
    """Service errors and unreachable servers become ``ErrorName: detail`` and exit status 1."""
    import httpx

    from service.client import InitServiceError

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InitServiceError as exc:
            message = f"{type(exc).__name__}: {exc}"
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            url = click.get_current_context().params.get("url") or "the URL given"
            message = (f"{type(exc).__name__}: the server is not reachable at {url} ({exc or 'no answer'}). "
                       "Start one with 'initsvc serve', or point --url (or INITSVC_URL) at a running one.")
        except httpx.HTTPError as exc:
            where = f" ({exc.request.url})" if _has_request(exc) else ""
            message = f"{type(exc).__name__}: {exc or 'no answer'}{where}"
        click.echo(" ".join(message.split()), err=True)
        sys.exit(1)

    return run  # type: ignore[return-value]


def _has_request(exc: Exception) -> bool:
    try:
        return exc.request is not None  # type: ignore[attr-defined]
    except RuntimeError:
        return False


def _client(url: str, api_key: str | None, timeout: float, retries: int) -> Any:
    from service.client import InitClient

    return InitClient(url, api_key, timeout=timeout, retries=retries)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _echo_summary(summary: Any) -> None:
    """``--json``: the stats, normalized request and provenance, without the data."""
    _echo_json({"tensors": summary.tensors, "request": summary.request, "provenance": summary.provenance})


class _ProgressBar:
    """``progress(done, total)`` for the client: a bar sized from Content-Length, or an
    indeterminate one when there is none; on stderr, so ``-o -`` can write to stdout."""

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label, self.bar, self.done = enabled, label, None, 0

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            unsized = (None for _ in ())  # no length hint: click draws an indeterminate bar
            self.bar = click.progressbar(iterable=None if total is not None else unsized, length=total,
                                         label=self.label, file=sys.stderr, show_eta=total is not None,
                                         item_show_func=lambda done: _size(done) if done is not None else None)
            self.bar.__enter__()
        self.bar.update(done - self.done, done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _save(client: Any, output: str, quiet: bool, **request: Any) -> None:
    """Stream the answer to ``output`` (``-``: stdout) with a progress bar, then say what was written."""
    bar = _ProgressBar(not quiet and output != "-" and sys.stderr.isatty(), f"{output}")
    try:
        path = sys.stdout.buffer if output == "-" else output
        written = client.download(path=path, progress=bar, **request)
    finally:
        bar.close()
    if not quiet and output != "-":
        click.echo(f"wrote {written.path}: {written.nbytes} bytes, seed {written.seed}, device {written.device}",
                   err=True)


FETCH_EPILOG = """\b
Examples:
  initsvc fetch --shape 256 784 --scheme kaiming_uniform --param a=2.2360679775 --seed 0 -o w.safetensors
  initsvc fetch --shape 768,3072 --scheme xavier_uniform --gain relu --dtype bfloat16 --seed 1
  initsvc fetch --shape 64 3 7 7 --scheme kaiming_normal --param mode=fan_out --param nonlinearity=relu --json
  initsvc fetch --shape 50257 768 --scheme normal --param std=0.02 --slice 0:12565,: --seed 0 -o shard0.safetensors
"""


@click.command(context_settings=CONTEXT, epilog=FETCH_EPILOG)
@click.option("--shape", "shape_start", required=True, metavar="DIM [DIM...]",
              help="Shape, [out, in, *kernel] for weights: '--shape 256 784' or '--shape 256,784'.")
@click.argument("more_dims", nargs=-1, metavar="")
@click.option("--scheme", required=True, type=click.Choice(list(RECIPE_MODELS)), metavar="SCHEME",
              help="Init scheme, as torch.nn.init names it ('initsvc schemes' lists parameters).")
@click.option("--param", "params", multiple=True, callback=parse_params, metavar="KEY=VALUE",
              help="A scheme parameter, repeatable: --param a=2.236 --param mode=fan_out.")
@click.option("--gain", callback=parse_gain, default=None, show_default=False,
              help="gain as a number (1.41), a nonlinearity (relu) or one with its parameter (leaky_relu:0.2).")
@click.option("--dtype", type=click.Choice(get_args(DType)), default="float32", show_default=True,
              help="Element type.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, show_default="the server draws one",
              help="RNG seed; the one used is reported either way.")
@click.option("--name", default="weight", show_default=True, help="Tensor name (the safetensors key).")
@click.option("--slice", "slice_", default=None, show_default=False, metavar="START:STOP,...",
              help="Only full[start:stop, ...] of the tensor, numpy notation without steps: 0:128,:")
@click.option("--rng", type=click.Choice(get_args(Rng)), default="torch", show_default=True,
              help="'torch' (bit-identical to torch) or 'portable-v1' (the same bits on every device).")
@click.option("--histogram-bins", type=click.IntRange(0, 1024), default=0, show_default=True,
              help="Histogram bins in the stats.")
@click.option("--stats/--no-stats", default=True, show_default=True,
              help="Put stats in the header; --no-stats lets the first bytes leave while the tensor is made.")
@answer_options(default=None, show_default="NAME.safetensors",
                help="Where to write the safetensors file; '-' for stdout.")
@client_options
@_reports_errors
def fetch(shape_start: str, more_dims: tuple[str, ...], scheme: str, params: dict[str, Any], gain: Any,
          slice_: str | None, output: str | None, as_json: bool, quiet: bool, url: str, api_key: str | None,
          timeout: float, retries: int, **fields: Any) -> None:
    """Fetch one initialized tensor as a safetensors file (or its stats with --json)."""
    from service.client._requests import normalize_slice

    ctx = click.get_current_context()
    shape = parse_shape(ctx, (shape_start, *more_dims))
    if gain is not None:
        params["gain"] = gain
    if slice_ is not None:
        try:
            fields["slice"] = normalize_slice(slice_, shape)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param_hint="'--slice'") from None
    with _client(url, api_key, timeout, retries) as client:
        if as_json:
            _echo_summary(client.stats(shape, scheme, **fields, **params))
            return
        _save(client, output or f"{fields['name']}.safetensors", quiet, shape=shape, scheme=scheme, **fields, **params)


MODULE_EPILOG = """\b
LAYERS is a JSON file ('-' for stdin): a list of layers, an object of named layers, or a whole
request body {"layers": ..., "overrides": [...], "seed": ...}. Options override the body's.

\b
Example:
  echo '[{"type": "Linear", "in_features": 784, "out_features": 256}, {"type": "ReLU"}]' > mlp.json
  initsvc module mlp.json --seed 0 -o mlp.safetensors
"""


@click.command(context_settings=CONTEXT, epilog=MODULE_EPILOG)
@click.argument("layers_file", metavar="LAYERS", type=click.File("r"))
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, show_default="the body's, else drawn",
              help="RNG seed.")
@click.option("--dtype", type=click.Choice(get_args(DType)), default=None, show_default="the body's, else float32",
              help="Element type.")
@click.option("--device", default=None, show_default="the body's, else auto", help="auto, cpu, cuda or cuda:N.")
@answer_options(default="module.safetensors", show_default=True,
                help="Where to write the state_dict as safetensors; '-' for stdout.")
@client_options
@_reports_errors
def module(layers_file: Any, output: str, as_json: bool, quiet: bool, url: str, api_key: str | None,
           timeout: float, retries: int, **fields: Any) -> None:
    """Fetch the state_dict of a torch.nn.Sequential of LAYERS, with PyTorch's default init."""
    try:
        spec = json.load(layers_file)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="LAYERS") from None
    body = dict(spec) if isinstance(spec, dict) and "layers" in spec else {"layers": spec}
    body.update({k: v for k, v in fields.items() if v is not None})
    with _client(url, api_key, timeout, retries) as client:
        if as_json:
            _echo_summary(client.stats(**body))
            return
        _save(client, output, quiet, **body)


MODEL_EPILOG = """\b
NAME is a preset of 'initsvc models'. --config values are JSON scalars (2 is an int, 0.1 a float,
true a bool, null null), anything else a string; fields left out take the reference's defaults.

\b
Examples:
  initsvc model transformers/GPT2LMHeadModel --config n_layer=2 --config n_embd=256 --seed 0 -o gpt2.safetensors
  initsvc model nanogpt/GPT --seed 0 --dtype bfloat16 --tensors transformer.wte.weight,lm_head.weight
  initsvc model torchvision/resnet18 --config num_classes=10 --json | jq '.tensors["fc.weight"].stats'
"""


@click.command(context_settings=CONTEXT, epilog=MODEL_EPILOG)
@click.argument("name")
@click.option("--config", "config", multiple=True, callback=parse_config, metavar="KEY=VALUE",
              help="A config field of the preset, repeatable: --config n_layer=2 --config bias=false.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, show_default="the server draws one",
              help="RNG seed; the one used is reported either way.")
@click.option("--dtype", type=click.Choice(get_args(DType)), default="float32", show_default=True,
              help="Element type of the floating tensors (integer buffers keep theirs).")
@click.option("--tensors", callback=parse_keys, default=None, show_default="all of them", metavar="KEY,KEY",
              help="Only these state_dict keys, comma-separated.")
@click.option("--histogram-bins", type=click.IntRange(0, 1024), default=0, show_default=True,
              help="Histogram bins in each tensor's stats.")
@click.option("--stats/--no-stats", default=True, show_default=True, help="Put per-tensor stats in the header.")
@answer_options(default=None, show_default="the model's name, e.g. GPT2LMHeadModel.safetensors",
                help="Where to write the state_dict as safetensors; '-' for stdout.")
@client_options
@_reports_errors
def model(name: str, config: dict[str, Any], output: str | None, as_json: bool, quiet: bool, url: str,
          api_key: str | None, timeout: float, retries: int, **fields: Any) -> None:
    """Fetch the state_dict of a model preset (POST /v1/model), initialized as its library does."""
    body = {"model": name, "config": config, **fields}
    with _client(url, api_key, timeout, retries) as client:
        if as_json:
            _echo_summary(client.stats(**body))
            return
        _save(client, output or f"{name.rsplit('/', 1)[-1]}.safetensors", quiet, **body)


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
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3].rjust(10))


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


@click.command(context_settings=CONTEXT,
               epilog="Examples: initsvc gain relu; initsvc gain leaky_relu 0.2; initsvc gain leaky_relu:0.2")
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
    dims = parse_shape(click.get_current_context(), shape)
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


CLIENT_COMMANDS = (fetch, module, model, models, schemes, gain, fans, devices)
