"""The public methods of ``InitClient`` and ``AsyncInitClient``, written once as plans
(``service.client._base``): each builds its request, asks its client for the I/O, and reads the
answer into what the method returns.

``InitClient`` makes each a blocking method (``service.client.sync.blocking``) and
``AsyncInitClient`` a coroutine (``service.client.aio.awaiting``); both keep its docstring and its
signature, with ``self`` for the leading ``client``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from service.client._answers import (
    Download,
    Progress,
    Result,
    Summary,
    TensorSet,
    check_target,
    partial_path,
    read_download,
    read_result,
    read_summary,
    read_tensor_set,
)
from service.client._base import ClientConfig, Plan, answer, content, fetch, json_content, write
from service.client._requests import BINARY, JSON, Call, DType, Rng, recipe_call, shape_text

# ---- tensors ------------------------------------------------------------------------------------


def tensor(
    client: ClientConfig,
    /,
    shape: Any,
    scheme: str | None = None,
    *,
    init: Mapping[str, Any] | None = None,
    dtype: DType | None = None,
    device: str | None = None,
    seed: int | None = None,
    name: str | None = None,
    slice: Any = None,
    rng: Rng | None = None,
    histogram_bins: int | None = None,
    stats: bool | None = None,
    as_numpy: bool = False,
    **params: Any,
) -> Plan[Result]:
    """One tensor, as ``torch.manual_seed(seed); torch.nn.init.<scheme>_(torch.empty(shape))``.

    ``client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0)``, or the recipe as a
    dict: ``init={"scheme": "kaiming_uniform", "a": 2.236}``. ``slice`` is ``[[0, 128], None]``,
    ``"0:128,:"`` or ``(slice(0, 128), None)``. Options left ``None`` take the server's
    defaults. ``as_numpy=True`` returns a numpy array and needs no torch (bfloat16 comes back as
    float32 holding exactly the same values).
    """
    call = recipe_call(shape, scheme, init=init, dtype=dtype, device=device, seed=seed, name=name,
                       slice=slice, rng=rng, histogram_bins=histogram_bins, stats=stats, **params)
    return read_result((yield from fetch(client, call)), as_numpy)


def tensors(
    client: ClientConfig,
    /,
    tensors: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
    *,
    seed: int | None = None,
    dtype: DType | None = None,
    device: str | None = None,
    as_numpy: bool = False,
    **fields: Any,
) -> Plan[TensorSet]:
    """Several named tensors drawn in order from one generator (``POST /v1/tensors``).

    ``tensors`` is a list of ``{"name", "shape", "init", ...}`` or a mapping name -> the rest.
    ``fields`` are further top-level body fields (``rng=``, ``histogram_bins=``...).
    """
    call = recipe_call(tensors=tensors, seed=seed, dtype=dtype, device=device, **fields)
    return read_tensor_set((yield from fetch(client, call)), as_numpy)


def module(
    client: ClientConfig,
    /,
    layers: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
    *,
    overrides: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None = None,
    seed: int | None = None,
    dtype: DType | None = None,
    device: str | None = None,
    as_numpy: bool = False,
    tensors: Sequence[str] | str | None = None,
    slice: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Plan[TensorSet]:
    """The ``state_dict`` of ``nn.Sequential(*layers)`` with PyTorch's default init
    (``POST /v1/module``); ``overrides`` is ``[{"param", "init"}]`` or ``{param: init}``.
    ``tensors`` and ``slice`` as for ``model``: ``tensors=["0.weight"]``,
    ``slice={"0.weight": "0:128,:"}``."""
    call = recipe_call(layers=layers, overrides=overrides, seed=seed, dtype=dtype, device=device,
                       tensors=tensors, slice=slice, **fields)
    return read_tensor_set((yield from fetch(client, call)), as_numpy)


def model(
    client: ClientConfig,
    /,
    name: str,
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
    dtype: DType = "float32",
    tensors: Sequence[str] | str | None = None,
    stats: bool = True,
    histogram_bins: int = 0,
    as_numpy: bool = False,
    slice: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Plan[TensorSet]:
    """The ``state_dict`` of a model preset (``POST /v1/model``), as its library initializes it.

    ``client.model("transformers/GPT2LMHeadModel", {"n_layer": 2}, seed=0)``. ``config`` holds
    the preset's fields (``models()`` lists them with their defaults); ``tensors`` the keys
    wanted (a list or ``"key,key"``; ``None``: all of them). ``slice`` answers only part of
    some keys: ``{"lm_head.weight": [[0, 128], None]}`` (or ``"0:128,:"``). ``fields`` are
    further body fields. Returns what ``module`` returns: a ``TensorSet`` keyed as the model's
    ``state_dict``.
    """
    call = recipe_call(model=name, config=config, seed=seed, dtype=dtype, tensors=tensors, stats=stats,
                       histogram_bins=histogram_bins, slice=slice, **fields)
    return read_tensor_set((yield from fetch(client, call)), as_numpy)


def stats(
    client: ClientConfig, /,
    shape: Any = None, scheme: str | None = None, *, init: Mapping[str, Any] | None = None,
    tensors: Any = None, layers: Any = None, overrides: Any = None, model: str | None = None,
    **options: Any,
) -> Plan[Summary]:
    """Stats, normalized request and provenance without the data (``Accept: application/json``).
    Takes what ``tensor`` takes, or ``tensors=`` / ``layers=`` / ``model=`` for the other
    endpoints."""
    call = recipe_call(shape, scheme, init=init, tensors=tensors, layers=layers, overrides=overrides,
                       model=model, accept=JSON, **options)
    return read_summary((yield from content(client, call)))


def download(
    client: ClientConfig, /,
    shape: Any = None, scheme: str | None = None, *, path: str | os.PathLike[str] | IO[bytes],
    progress: Progress | None = None, init: Mapping[str, Any] | None = None, tensors: Any = None,
    layers: Any = None, overrides: Any = None, model: str | None = None, **options: Any,
) -> Plan[Download]:
    """Stream the safetensors answer to ``path`` (a file name, or a binary file object) without
    holding it in memory. ``progress(done, total)`` is called after each chunk; ``total`` is the
    ``Content-Length``, or ``None`` when the server sent none. A file name is checked before the
    request (a directory, or one in a directory that does not exist, raises at once), written
    under a hidden ``.<name>.<random>.part`` beside it and renamed when complete, its header
    checked against its length. Takes what ``stats`` takes."""
    call = recipe_call(shape, scheme, init=init, tensors=tensors, layers=layers, overrides=overrides,
                       model=model, accept=BINARY, **options)
    if isinstance(path, str | os.PathLike):
        check_target(Path(path))
    response = yield from answer(client, call)
    if not isinstance(path, str | os.PathLike):
        done = yield from write(response, path, progress)
        return read_download(Path(getattr(path, "name", "-")), done, response.headers)
    target = Path(path)
    part = partial_path(target)
    try:
        with open(part, "xb") as file:
            done = yield from write(response, file, progress)
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return read_download(target, done, response.headers)


# ---- catalog ----------------------------------------------------------------------------------


def get_json(client: ClientConfig, path: str, params: dict[str, Any] | None = None) -> Plan[Any]:
    """``GET path``'s JSON answer."""
    return (yield from json_content(client, Call("GET", path, params=params)))


def schemes(client: ClientConfig, /) -> Plan[dict[str, Any]]:
    """``GET /v1/schemes``: scheme name -> parameters, shape rule, formula, reference."""
    return (yield from get_json(client, "/v1/schemes"))["schemes"]


def layers(client: ClientConfig, /) -> Plan[dict[str, Any]]:
    """``GET /v1/layers``: the layer types ``module`` accepts, with their arguments."""
    return (yield from get_json(client, "/v1/layers"))


def models(client: ClientConfig, /) -> Plan[dict[str, Any]]:
    """``GET /v1/models``: preset name -> library, reference, versions, doc, config fields
    (name, type, default, nullable, affects_weights...) and the default config's size."""
    return (yield from get_json(client, "/v1/models"))["models"]


def models_answer(client: ClientConfig, /) -> Plan[dict[str, Any]]:
    """The whole ``GET /v1/models`` answer (with the server's torch version), for the CLI."""
    return (yield from get_json(client, "/v1/models"))


def gain(client: ClientConfig, /, nonlinearity: str, param: float | None = None) -> Plan[float]:
    """``torch.nn.init.calculate_gain(nonlinearity, param)``, computed by the server."""
    params = {"nonlinearity": nonlinearity} | ({} if param is None else {"param": param})
    return (yield from get_json(client, "/v1/gain", params))["gain"]


def fans(client: ClientConfig, /, shape: Any) -> Plan[dict[str, int]]:
    """``{"fan_in", "fan_out", "receptive_field"}`` of a weight shape ``[out, in, *kernel]``."""
    return (yield from get_json(client, "/v1/fans", {"shape": shape_text(shape)}))


def devices(client: ClientConfig, /) -> Plan[dict[str, Any]]:
    """``GET /v1/devices``: the devices, which one ``auto`` means, torch version and limits."""
    return (yield from get_json(client, "/v1/devices"))
