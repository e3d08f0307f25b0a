"""Model presets in the client and the CLI, against a stand-in for ``POST /v1/model`` and
``GET /v1/models`` (the API of ``docs/api.md``): what is sent, and that the answer comes back as
``module`` answers do. The stand-in answers a fixed safetensors file and records each body."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import safetensors.numpy
import torch
import uvicorn
from fastapi import FastAPI, Request, Response

from service.client import AsyncInitClient, InitClient, TensorSet

ROOT = Path(__file__).resolve().parents[1]
GPT2 = "transformers/GPT2LMHeadModel"
TENSORS = {
    "transformer.wte.weight": np.arange(12, dtype=np.float32).reshape(4, 3) / 7,
    "transformer.h.0.attn.bias": np.tril(np.ones((1, 1, 2, 2), dtype=np.uint8)),
}
META = {
    "stats": {"transformer.wte.weight": {"mean": 0.7857, "numel": 12}, "transformer.h.0.attn.bias": None},
    "provenance": {"torch": torch.__version__, "device": "cpu"},
}
MODELS = {
    "models": {
        GPT2: {"library": "transformers", "reference": "transformers.GPT2LMHeadModel(transformers.GPT2Config(**config))",
               "versions": ">=4.40", "doc": "GPT-2 with its LM head",
               "fields": [{"name": "n_layer", "type": "int", "default": 12, "nullable": False, "affects_weights": True}],
               "default_config": {"parameters": 124439808, "elements": 124439808, "bytes": 497759232, "tensors": 149}},
        "nanogpt/GPT": {"library": "nanogpt", "reference": "model.GPT(GPTConfig(**config))", "versions": "",
                        "doc": "", "fields": [], "default_config": {"parameters": 124475904}},
    },
    "torch": torch.__version__,
}


def _answer(body: dict[str, Any]) -> bytes:
    """The stand-in's file for ``body``, made once (safetensors writes metadata in no fixed order)."""
    return _answer_of(json.dumps(body, sort_keys=True))


@functools.cache
def _answer_of(body_json: str) -> bytes:
    request = {"seed": 0, "config": {}, **json.loads(body_json)}
    metadata = {"format": "pt", "request": json.dumps(request), **{k: json.dumps(v) for k, v in META.items()}}
    return safetensors.numpy.save(TENSORS, metadata=metadata)


class Recorder:
    """The stand-in's handler for ``httpx.MockTransport``, recording each request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=MODELS)
        body = json.loads(request.content)
        if request.headers.get("accept") == "application/json":
            return httpx.Response(200, json={"tensors": {"transformer.wte.weight": {"shape": [4, 3]}},
                                             "request": body, "provenance": META["provenance"]})
        return httpx.Response(200, content=_answer(body), headers={"x-init-seed": "0", "x-init-device": "cpu"})

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _check(result: TensorSet, as_numpy: bool) -> None:
    assert list(result) == list(TENSORS)
    for name, expected in TENSORS.items():
        got = result[name] if as_numpy else result[name].numpy()
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), name
    assert result.stats["transformer.wte.weight"] == META["stats"]["transformer.wte.weight"]
    assert result.provenance == META["provenance"]


@pytest.mark.parametrize("as_numpy", [False, True])
def test_model_posts_the_body_and_returns_the_state_dict(recorder, as_numpy):
    with InitClient("http://initsvc.test", transport=httpx.MockTransport(recorder)) as client:
        result = client.model(GPT2, {"n_layer": 2, "n_embd": 64}, seed=7, dtype="bfloat16",
                              tensors="transformer.wte.weight, transformer.h.0.attn.bias", stats=False,
                              histogram_bins=8, as_numpy=as_numpy)
    (request,) = recorder.requests
    assert (request.method, request.url.path, request.headers["accept"]) == ("POST", "/v1/model",
                                                                             "application/octet-stream")
    assert recorder.bodies == [{"model": GPT2, "config": {"n_layer": 2, "n_embd": 64}, "seed": 7, "dtype": "bfloat16",
                                "tensors": ["transformer.wte.weight", "transformer.h.0.attn.bias"], "stats": False,
                                "histogram_bins": 8}]
    _check(result, as_numpy)
    assert result.request["config"] == {"n_layer": 2, "n_embd": 64}


def test_model_defaults_leave_the_seed_config_and_keys_to_the_server(recorder):
    with InitClient("http://initsvc.test", transport=httpx.MockTransport(recorder)) as client:
        client.model(GPT2)
        client.model(GPT2, tensors=("transformer.wte.weight",), seed=np.uint64(3))
    assert recorder.bodies == [
        {"model": GPT2, "dtype": "float32", "stats": True, "histogram_bins": 0},
        {"model": GPT2, "dtype": "float32", "stats": True, "histogram_bins": 0, "seed": 3,
         "tensors": ["transformer.wte.weight"]},
    ]


def test_async_model_and_models(recorder):
    async def run() -> tuple[TensorSet, dict[str, Any]]:
        async with AsyncInitClient("http://initsvc.test", transport=httpx.MockTransport(recorder)) as client:
            return await client.model(GPT2, {"n_layer": 1}, seed=0), await client.models()

    result, models = asyncio.run(run())
    _check(result, as_numpy=False)
    assert models == MODELS["models"]
    assert recorder.bodies[0]["config"] == {"n_layer": 1}


def test_models_stats_and_download_of_a_model(recorder, tmp_path):
    with InitClient("http://initsvc.test", transport=httpx.MockTransport(recorder)) as client:
        assert client.models() == MODELS["models"]
        summary = client.stats(model=GPT2, config={"n_layer": 2}, seed=0)
        done = client.download(model=GPT2, config={"n_layer": 2}, seed=0, path=tmp_path / "gpt2.safetensors")
        with pytest.raises(TypeError, match="overrides"):
            client.download(model=GPT2, overrides={"x": {}}, path=tmp_path / "x")
        with pytest.raises(TypeError, match="exactly one"):
            client.stats(model=GPT2, layers=[{"type": "ReLU"}])
    assert summary.request == {"model": GPT2, "config": {"n_layer": 2}, "seed": 0}
    assert recorder.requests[1].headers["accept"] == "application/json"
    assert (tmp_path / "gpt2.safetensors").read_bytes() == _answer(recorder.bodies[1])
    assert (done.seed, done.device, done.nbytes) == (0, "cpu", (tmp_path / "gpt2.safetensors").stat().st_size)


# ---- the CLI, against a stand-in server -----------------------------------------------------------


class StandIn:
    """The stand-in as an HTTP server in a thread, for ``initsvc`` run as its own process."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return MODELS

        @app.post("/v1/model")
        async def model(request: Request) -> Response:
            body = await request.json()
            self.bodies.append(body)
            if request.headers.get("accept") == "application/json":
                return Response(json.dumps({"tensors": {"transformer.wte.weight": {"stats": {"numel": 12}}},
                                            "request": body, "provenance": META["provenance"]}),
                                media_type="application/json")
            return Response(_answer(body), media_type="application/octet-stream",
                            headers={"x-init-seed": "0", "x-init-device": "cpu"})

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    server.thread.start()
    deadline = time.monotonic() + 30
    while not server.server.started:
        assert time.monotonic() < deadline and server.thread.is_alive(), "the stand-in did not start"
        time.sleep(0.01)
    yield server
    server.server.should_exit = True
    server.thread.join(10)


def initsvc(*args: str, url: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", *args, "--url", url], capture_output=True, text=True,
                          cwd=cwd, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"})


def test_cli_model_sends_config_values_as_json_scalars_and_writes_the_answer(stand_in, tmp_path):
    stand_in.bodies.clear()
    done = initsvc("model", GPT2, "--config", "n_layer=2", "--config", "resid_pdrop=0.1", "--config",
                   "scale_attn_weights=true", "--config", "activation_function=gelu_new", "--config", "n_inner=null",
                   "--seed", "0", "--dtype", "bfloat16", "--tensors", "transformer.wte.weight,lm_head.weight",
                   "-o", str(tmp_path / "gpt2.safetensors"), url=stand_in.url)
    assert done.returncode == 0, done.stderr
    body = {"model": GPT2, "config": {"n_layer": 2, "resid_pdrop": 0.1, "scale_attn_weights": True,
                                      "activation_function": "gelu_new", "n_inner": None},
            "seed": 0, "dtype": "bfloat16", "tensors": ["transformer.wte.weight", "lm_head.weight"], "stats": True,
            "histogram_bins": 0}
    assert stand_in.bodies == [body]
    written = (tmp_path / "gpt2.safetensors").read_bytes()
    assert written == _answer(body)
    assert done.stderr == f"wrote {tmp_path / 'gpt2.safetensors'}: {len(written)} bytes, seed 0, device cpu\n"


def test_cli_model_names_the_file_after_the_model_and_prints_json(stand_in, tmp_path):
    stand_in.bodies.clear()
    done = initsvc("model", GPT2, "-q", url=stand_in.url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "GPT2LMHeadModel.safetensors").read_bytes() == _answer(stand_in.bodies[0])
    assert stand_in.bodies[0] == {"model": GPT2, "config": {}, "dtype": "float32", "stats": True, "histogram_bins": 0}
    done = initsvc("model", GPT2, "--config", "n_layer=1", "--json", url=stand_in.url)
    assert json.loads(done.stdout)["request"]["config"] == {"n_layer": 1}


def test_cli_model_refuses_a_config_without_a_value():
    from click.testing import CliRunner

    from service.cli import main

    result = CliRunner().invoke(main, ["model", GPT2, "--config", "n_layer", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "--config" in result.stderr and "KEY=VALUE" in result.stderr


def test_cli_models_prints_a_table_and_json(stand_in):
    done = initsvc("models", url=stand_in.url)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "REFERENCE", "VERSIONS", "PARAMETERS"]
    assert rows[0].startswith(GPT2) and rows[0].rstrip().endswith("124,439,808") and ">=4.40" in rows[0]
    assert rows[1].split()[0] == "nanogpt/GPT" and rows[1].rstrip().endswith("124,475,904")
    done = initsvc("models", "--json", url=stand_in.url)
    assert json.loads(done.stdout) == MODELS
