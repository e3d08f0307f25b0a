"""``initsvc``: serve the API, and fetch from it.

    initsvc serve [--port 8000] [--device cuda:0] [--max-elements N ...]
    initsvc fetch --shape 256 784 --scheme kaiming_uniform --seed 0 -o w.safetensors
    initsvc module layers.json -o model.safetensors
    initsvc schemes | gain relu | fans 64 3 7 7 | devices

Thin over ``service.client`` (as httpx's ``_main.py`` is over httpx) and over ``Settings``, whose
fields ``serve``'s options are. A service error prints ``ErrorName: detail`` on one line and
exits 1, without a traceback. Client verbs never import torch.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar, get_args

import click

from service.schemas.recipes import RECIPE_MODELS
from service.schemas.requests import SEED_MAX, DType, Rng
from service.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# Settings fields that serve takes as options (the rest, such as API keys, stay environment-only).
SERVE_SETTINGS = {
    "default_device": "--device", "max_elements": None, "max_request_bytes": None, "max_tensors": None,
    "max_body_bytes": None, "max_inflight_bytes": None, "queue_depth": None, "qr_threads": None,
    "cpu_threads": None, "job_timeout_s": None, "shutdown_timeout_s": None, "retry_after_s": None,
    "cors_origins": None, "log_json": None,
}


@click.group(context_settings=CONTEXT)
def main() -> None:
    """initsvc: initialized neural-network weights over HTTP, bit-identical to torch.nn.init."""


# ---- serve -------------------------------------------------------------------------------------


def _settings_options(command: F) -> F:
    """One option per ``SERVE_SETTINGS`` field, with the field's description as its help."""
    for field_name, flag in reversed(SERVE_SETTINGS.items()):
        field = Settings.model_fields[field_name]
        env = f"INITSVC_{field_name.upper()}"
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        default = "empty" if default == [] else default
        annotation = [a for a in get_args(field.annotation) if a is not type(None)] or [field.annotation]
        kind = {bool: bool, int: int, float: float}.get(annotation[0], str)
        show = f"${env}, else {'unset' if default is None else default}"
        name = flag or "--" + field_name.replace("_", "-")
        decls = [f"{name}/--no-{name[2:]}" if kind is bool else name, field_name]
        command = click.option(*decls, default=None, type=None if kind is bool else kind, show_default=show,
                               help=f"{field.description} Sets {env}.")(command)
    return command


@main.command(context_settings=CONTEXT,
              epilog="Example: initsvc serve --port 8080 --device cpu --max-elements 100000000")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes.")
@_settings_options
def serve(host: str, port: int, workers: int, **overrides: Any) -> None:
    """Start the HTTP service. Settings come from INITSVC_* variables; options override them."""
    import uvicorn
    from pydantic import ValidationError

    for field_name, value in overrides.items():
        if value is not None:
            os.environ[f"INITSVC_{field_name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        settings = Settings()  # validated here, read again by each server process from the environment
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = str(first["loc"][0]) if first["loc"] else ""
        flag = SERVE_SETTINGS.get(field_name) or "--" + field_name.replace("_", "-")
        raise click.BadParameter(first["msg"], param_hint=f"'{flag}' (INITSVC_{field_name.upper()})") from None
    if workers == 1:  # one process: drain the pool on SIGTERM (503s, /readyz down) before exiting
        from service.server import run

        run(settings, host=host, port=port)
        return
    uvicorn.run("service.app:app", host=host, port=port, workers=workers,
                timeout_graceful_shutdown=int(settings.shutdown_timeout_s))


# ---- client verbs ------------------------------------------------------------------------------


def _client_options(command: F) -> F:
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


def _parse_shape(ctx: click.Context, values: tuple[str, ...]) -> list[int]:
    """``256 784``, ``256,784`` or ``256x784`` (also mixed) -> ``[256, 784]``."""
    dims: list[int] = []
    for value in values:
        for part in value.replace("x", ",").split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                raise click.BadParameter(
                    f"dimensions are non-negative integers, as in 256 784 or 256,784; got {value!r}",
                    ctx=ctx, param_hint="'--shape'")
            dims.append(int(part))
    return dims


def _parse_value(text: str) -> Any:
    """A JSON number when it is one (``2.5``, ``-1``, ``1e-3``), else the text (``fan_out``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float) and not isinstance(value, bool) else text


def _parse_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, as in a=2.236 or mode=fan_out; got {item!r}", ctx, param)
        params[key.strip()] = _parse_value(value.strip())
    return params


def _parse_gain(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``1.41`` (a number), ``relu`` or ``leaky_relu:0.2`` (calculate_gain(nonlinearity, param))."""
    if value is None:
        return None
    number = _parse_value(value)
    if not isinstance(number, str):
        return number
    name, sep, extra = value.partition(":")
    spec: dict[str, Any] = {"nonlinearity": name}
    if sep:
        spec["param"] = _parse_value(extra)
        if isinstance(spec["param"], str):
            raise click.BadParameter(f"the part after ':' is the nonlinearity's parameter, a number; got {extra!r}",
                                     ctx, param)
    return spec


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


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


@main.command(context_settings=CONTEXT, epilog=FETCH_EPILOG)
@click.option("--shape", "shape_start", required=True, metavar="DIM [DIM...]",
              help="Shape, [out, in, *kernel] for weights: '--shape 256 784' or '--shape 256,784'.")
@click.argument("more_dims", nargs=-1, metavar="")
@click.option("--scheme", required=True, type=click.Choice(list(RECIPE_MODELS)), metavar="SCHEME",
              help="Init scheme, as torch.nn.init names it ('initsvc schemes' lists parameters).")
@click.option("--param", "params", multiple=True, callback=_parse_params, metavar="KEY=VALUE",
              help="A scheme parameter, repeatable: --param a=2.236 --param mode=fan_out.")
@click.option("--gain", callback=_parse_gain, default=None, show_default=False,
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
@click.option("-o", "--output", default=None, show_default="NAME.safetensors", metavar="FILE",
              help="Where to write the safetensors file; '-' for stdout.")
@click.option("--json", "as_json", is_flag=True, default=False, show_default=True,
              help="Print the stats, request and provenance as JSON instead of downloading the data.")
@click.option("-q", "--quiet", is_flag=True, default=False, show_default=True, help="No progress bar or summary.")
@_client_options
@_reports_errors
def fetch(shape_start: str, more_dims: tuple[str, ...], scheme: str, params: dict[str, Any], gain: Any,
          slice_: str | None, output: str | None, as_json: bool, quiet: bool, url: str, api_key: str | None,
          timeout: float, retries: int, **fields: Any) -> None:
    """Fetch one initialized tensor as a safetensors file (or its stats with --json)."""
    from service.client._base import normalize_slice

    ctx = click.get_current_context()
    shape = _parse_shape(ctx, (shape_start, *more_dims))
    if gain is not None:
        params["gain"] = gain
    if slice_ is not None:
        try:
            fields["slice"] = normalize_slice(slice_, shape)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param_hint="'--slice'") from None
    with _client(url, api_key, timeout, retries) as client:
        if as_json:
            summary = client.stats(shape, scheme, **fields, **params)
            _echo_json({"tensors": summary.tensors, "request": summary.request, "provenance": summary.provenance})
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


@main.command(context_settings=CONTEXT, epilog=MODULE_EPILOG)
@click.argument("layers_file", metavar="LAYERS", type=click.File("r"))
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, show_default="the body's, else drawn",
              help="RNG seed.")
@click.option("--dtype", type=click.Choice(get_args(DType)), default=None, show_default="the body's, else float32",
              help="Element type.")
@click.option("--device", default=None, show_default="the body's, else auto", help="auto, cpu, cuda or cuda:N.")
@click.option("-o", "--output", default="module.safetensors", show_default=True, metavar="FILE",
              help="Where to write the state_dict as safetensors; '-' for stdout.")
@click.option("--json", "as_json", is_flag=True, default=False, show_default=True,
              help="Print the stats, request and provenance as JSON instead of downloading the data.")
@click.option("-q", "--quiet", is_flag=True, default=False, show_default=True, help="No progress bar or summary.")
@_client_options
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
            summary = client.stats(**body)
            _echo_json({"tensors": summary.tensors, "request": summary.request, "provenance": summary.provenance})
            return
        _save(client, output, quiet, **body)


@main.command(context_settings=CONTEXT, epilog="Example: initsvc schemes --json | jq '.kaiming_uniform'")
@click.option("--json", "as_json", is_flag=True, default=False, show_default=True, help="Print the catalog as JSON.")
@_client_options
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


@main.command(context_settings=CONTEXT, epilog="Examples: initsvc gain relu; initsvc gain leaky_relu --param 0.2")
@click.argument("nonlinearity")
@click.option("--param", type=float, default=None, show_default="leaky_relu: 0.01",
              help="The nonlinearity's parameter (leaky_relu's negative slope).")
@_client_options
@_reports_errors
def gain(nonlinearity: str, param: float | None, url: str, api_key: str | None, timeout: float, retries: int) -> None:
    """Print torch.nn.init.calculate_gain(NONLINEARITY, param)."""
    with _client(url, api_key, timeout, retries) as client:
        click.echo(repr(client.gain(nonlinearity, param)))


@main.command(context_settings=CONTEXT, epilog="Examples: initsvc fans 64 3 7 7; initsvc fans 256,784")
@click.argument("shape", nargs=-1, required=True)
@_client_options
@_reports_errors
def fans(shape: tuple[str, ...], url: str, api_key: str | None, timeout: float, retries: int) -> None:
    """Print fan_in, fan_out and receptive field of a weight SHAPE [out, in, *kernel]."""
    dims = _parse_shape(click.get_current_context(), shape)
    with _client(url, api_key, timeout, retries) as client:
        answer = client.fans(dims)
    click.echo(" ".join(f"{key}={value}" for key, value in answer.items()))


@main.command(context_settings=CONTEXT, epilog="Example: INITSVC_URL=http://gpu-box:8000 initsvc devices")
@_client_options
@_reports_errors
def devices(url: str, api_key: str | None, timeout: float, retries: int) -> None:
    """Print the server's devices, which one 'auto' means, its torch version and limits (JSON)."""
    with _client(url, api_key, timeout, retries) as client:
        _echo_json(client.devices())
