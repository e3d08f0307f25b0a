"""The commands that download tensors: ``fetch`` (one tensor), ``module`` (a torch.nn stack) and
``model`` (a model preset). Each streams a safetensors file to disk behind a progress bar, or prints
the stats alone with ``--json``."""

from __future__ import annotations

import json
from typing import Any, get_args

import click

from service.cli.options import (
    CONTEXT,
    answer_options,
    client_options,
    parse_config,
    parse_gain,
    parse_key_slices,
    parse_keys,
    parse_params,
    parse_shape,
)
from service.cli.output import _client, _echo_summary, _reports_errors, _save
from service.schemas.recipes import RECIPE_MODELS
from service.schemas.requests import SEED_MAX, DType, Rng

FETCH_EPILOG = """\b
Examples:
  initsvc fetch --shape 256 784 --scheme kaiming_uniform --param a=2.2360679775 --seed 0 -o w.safetensors
  initsvc fetch --shape 768,3072 --scheme xavier_uniform --gain relu --dtype bfloat16 --seed 1
  initsvc fetch --shape 64 3 7 7 --scheme kaiming_normal --param mode=fan_out --param nonlinearity=relu --json
  initsvc fetch --shape 50257 768 --scheme normal --param std=0.02 --slice 0:12565,: --seed 0 -o shard0.safetensors
"""


@click.command(context_settings=CONTEXT, epilog=FETCH_EPILOG)
@click.option("--shape", "shape_start", required=True, metavar="DIM [DIM...]",
              help="Shape, [out, in, *kernel] for weights: '--shape 256 784', '--shape 256,784' or '--shape 256x784' "
                   "('' for a 0-d tensor).")
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
  initsvc module mlp.json --seed 0 --tensors 0.weight --slice 0.weight=0:128,: -o rows.safetensors
"""


@click.command(context_settings=CONTEXT, epilog=MODULE_EPILOG)
@click.argument("layers_file", metavar="LAYERS", type=click.File("r"))
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, show_default="the body's, else drawn",
              help="RNG seed.")
@click.option("--dtype", type=click.Choice(get_args(DType)), default=None, show_default="the body's, else float32",
              help="Element type.")
@click.option("--device", default=None, show_default="the body's, else auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--tensors", callback=parse_keys, default=None, show_default="the body's, else all", metavar="KEY,KEY",
              help="Only these state_dict keys, comma-separated.")
@click.option("--slice", "slice", multiple=True, callback=parse_key_slices, metavar="KEY=START:STOP,...",
              help="Only part of a key, repeatable: --slice 0.weight=0:128,: (one start:stop or ':' per "
              "dimension; a key of --tensors when it is given).")
@click.option("--histogram-bins", type=click.IntRange(0, 1024), default=None, show_default="the body's, else 0",
              help="Histogram bins in each tensor's stats.")
@click.option("--stats/--no-stats", default=None, show_default="the body's, else --stats",
              help="Put per-tensor stats in the header; --no-stats streams the answer as it is made.")
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
  initsvc model transformers/GPT2LMHeadModel --tensors lm_head.weight --slice lm_head.weight=0:128,: --seed 0
  initsvc model transformers/LlamaForCausalLM --dtype bfloat16 --seed 0 --no-stats -o llama.safetensors


The answer is written to disk as it arrives, behind a progress bar. With --no-stats a whole model
streams from the server in bounded memory too: each tensor leaves as it is made.
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
@click.option("--slice", "slice", multiple=True, callback=parse_key_slices, metavar="KEY=START:STOP,...",
              help="Only part of a key, repeatable: --slice lm_head.weight=0:128,: (one start:stop or ':' per "
              "dimension; a key of --tensors when it is given).")
@click.option("--histogram-bins", type=click.IntRange(0, 1024), default=0, show_default=True,
              help="Histogram bins in each tensor's stats.")
@click.option("--stats/--no-stats", default=True, show_default=True,
              help="Put per-tensor stats in the header; --no-stats streams the answer as it is made, in bounded memory.")
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
