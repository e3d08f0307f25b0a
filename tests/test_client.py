"""The Python client: same bytes as torch, retries that honour Retry-After, errors that carry the
server's detail, and numpy answers without torch."""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
import safetensors.numpy
import torch

from service.client import (
    AsyncInitClient,
    Busy,
    InitClient,
    InitServiceError,
    InvalidRecipe,
    MalformedAnswer,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from tests.conftest import live_server
from tests.torch_reference import as_bytes, reference

ROOT = Path(__file__).resolve().parents[1]
SQRT5 = math.sqrt(5)

RECIPES = [
    pytest.param([256, 784], "kaiming_uniform", {"a": SQRT5}, "float32", 0, id="kaiming-uniform-f32"),
    pytest.param([64, 32], "normal", {"std": 0.02}, "bfloat16", 1, id="normal-bf16"),
    pytest.param([48, 16, 3], "xavier_normal", {"gain": {"nonlinearity": "relu"}}, "float16", 2, id="xavier-f16-3d"),
    pytest.param([10, 20], "trunc_normal", {"std": 0.5}, "float64", 2**40 + 3, id="trunc-normal-f64-big-seed"),
]


# ---- against a live server ---------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "scheme", "params", "dtype", "seed"), RECIPES)
def test_sync_tensor_is_bit_identical_to_torch(server, shape, scheme, params, dtype, seed):
    with InitClient(server.url) as client:
        result = client.tensor(shape, scheme, dtype=dtype, device="cpu", seed=seed, **params)
    expected = reference(shape, scheme, params, dtype, seed)
    assert result.tensor.dtype == expected.dtype and list(result.tensor.shape) == shape
    assert as_bytes(result.tensor) == as_bytes(expected)
    assert result.seed == seed and result.request["init"]["scheme"] == scheme
    assert result.stats["numel"] == expected.numel() and result.provenance["device"] == "cpu"


@pytest.mark.parametrize(("shape", "scheme", "params", "dtype", "seed"), RECIPES)
def test_async_tensor_is_bit_identical_to_torch(server, shape, scheme, params, dtype, seed):
    async def fetch():
        async with AsyncInitClient(server.url) as client:
            return await client.tensor(shape, init={"scheme": scheme, **params}, dtype=dtype, device="cpu", seed=seed)

    result = asyncio.run(fetch())
    assert as_bytes(result.tensor) == as_bytes(reference(shape, scheme, params, dtype, seed))


def test_init_dict_and_keyword_parameters_give_the_same_bytes(server):
    with InitClient(server.url) as client:
        by_keywords = client.tensor((32, 16), "kaiming_normal", mode="fan_out", nonlinearity="relu", seed=5)
        by_dict = client.tensor("32,16", init={"scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"},
                                seed=5)
    assert as_bytes(by_keywords.tensor) == as_bytes(by_dict.tensor)


def test_slice_is_the_same_bits_as_cutting_the_full_tensor(server):
    full = reference([64, 48], "uniform", {"a": -1.0, "b": 1.0}, seed=9)
    with InitClient(server.url) as client:
        shard = client.tensor([64, 48], "uniform", a=-1.0, b=1.0, seed=9, device="cpu", slice=(slice(16, 32), None))
        same = client.tensor([64, 48], "uniform", a=-1.0, b=1.0, seed=9, device="cpu", slice="16:32,:")
    assert as_bytes(shard.tensor) == as_bytes(full[16:32, :]) == as_bytes(same.tensor)


def test_as_numpy_gives_float32_arrays_exactly_equal_to_bfloat16_values(server):
    with InitClient(server.url) as client:
        result = client.tensor([33, 7], "normal", dtype="bfloat16", device="cpu", seed=11, as_numpy=True)
    expected = reference([33, 7], "normal", dtype="bfloat16", seed=11).float().numpy()
    assert isinstance(result.tensor, np.ndarray) and result.tensor.dtype == np.float32
    assert result.tensor.tobytes() == expected.tobytes()


def test_stats_returns_the_json_summary_without_data(server):
    with InitClient(server.url) as client:
        summary = client.stats([128, 64], "xavier_uniform", gain=2.0, seed=3, device="cpu", histogram_bins=4)
    expected = reference([128, 64], "xavier_uniform", {"gain": 2.0}, seed=3)
    entry = summary.tensors["weight"]
    assert entry["shape"] == [128, 64] and entry["dtype"] == "float32"
    assert summary.stats["weight"]["max"] == expected.max().item()
    assert sum(summary.stats["weight"]["histogram"]["counts"]) == 128 * 64
    assert summary.request["seed"] == 3


def test_download_streams_the_apis_bytes_to_a_file_with_progress(server, http, tmp_path):
    calls = []
    with InitClient(server.url) as client:
        written = client.download([300, 200], "normal", std=0.5, seed=4, device="cpu", path=tmp_path / "w.safetensors",
                                  progress=lambda done, total: calls.append((done, total)))
    api = http.get("/v1/tensor", params={"shape": "300,200", "scheme": "normal", "std": 0.5, "seed": 4,
                                         "device": "cpu"})
    assert (tmp_path / "w.safetensors").read_bytes() == api.content
    assert written.nbytes == len(api.content) and written.seed == 4 and written.device == "cpu"
    assert calls[0] == (0, len(api.content)) and calls[-1] == (len(api.content), len(api.content))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no partial file left


def test_async_download_and_catalog_calls(server, tmp_path):
    async def run():
        async with AsyncInitClient(server.url) as client:
            written = await client.download([8, 8], "eye", path=tmp_path / "eye.safetensors", dtype="float64")
            return written, await client.gain("relu"), await client.fans([64, 3, 7, 7]), await client.schemes()

    written, gain, fans, schemes = asyncio.run(run())
    loaded = safetensors.numpy.load_file(written.path)
    assert np.array_equal(loaded["weight"], np.eye(8))
    assert gain == math.sqrt(2)
    assert fans == {"fan_in": 147, "fan_out": 3136, "receptive_field": 49}
    assert "kaiming_uniform" in schemes


def test_catalog_calls_match_torch(server):
    with InitClient(server.url) as client:
        assert client.gain("leaky_relu", 0.2) == torch.nn.init.calculate_gain("leaky_relu", 0.2)
        assert client.fans("16,8") == {"fan_in": 8, "fan_out": 16, "receptive_field": 1}
        devices = client.devices()
    assert devices["default"] in [d["device"] for d in devices["devices"]]
    assert devices["torch"] == torch.__version__


def test_invalid_recipe_raises_with_the_servers_detail(server):
    with InitClient(server.url) as client, pytest.raises(InvalidRecipe) as caught:
        client.tensor([10, 4, 3], "dirac", groups=3)
    error = caught.value
    assert error.status == 422 and error.retry_after is None
    assert error.problems[0]["loc"][-1] == "groups"
    assert "groups" in str(error) and "\n" not in str(error)


def test_misspelt_parameter_is_named(server):
    with InitClient(server.url) as client, pytest.raises(InvalidRecipe) as caught:
        client.tensor([4], "normal", sdt=1.0)
    assert caught.value.problems[0]["loc"][-1] == "sdt"


def test_too_large_carries_the_limit_and_its_variable():
    with live_server(max_elements=1024) as small, InitClient(small.url) as client:
        with pytest.raises(TooLarge) as caught:
            client.tensor([64, 64], "zeros")
    error = caught.value
    assert error.status == 413 and error.env_var == "INITSVC_MAX_ELEMENTS" and error.limit == 1024
    assert "INITSVC_MAX_ELEMENTS" in str(error)


def test_api_key_is_sent_as_a_bearer_token_and_a_missing_one_is_unauthorized():
    with live_server(api_keys="k-one,k-two") as guarded:
        with InitClient(guarded.url, api_key="k-two") as client:
            assert client.gain("relu") == math.sqrt(2)
        with InitClient(guarded.url, api_key="") as client, pytest.raises(Unauthorized) as caught:
            client.tensor([2, 2], "zeros")
    assert caught.value.status == 401 and "API key" in str(caught.value)


def _endpoint_or_skip(client: InitClient, call):
    try:
        return call()
    except InitServiceError as exc:
        if exc.status in (404, 405):
            pytest.skip(f"the server has no such endpoint yet ({exc.status})")
        raise


def test_tensors_are_drawn_in_order_from_one_generator(server):
    specs = [{"name": "a", "shape": [16, 8], "init": {"scheme": "normal", "std": 0.02}},
             {"name": "b", "shape": [8], "init": {"scheme": "zeros"}},
             {"name": "c", "shape": [4, 4], "init": {"scheme": "uniform"}}]
    with InitClient(server.url) as client:
        result = _endpoint_or_skip(client, lambda: client.tensors(specs, seed=7, device="cpu"))
    torch.manual_seed(7)
    a, b, c = torch.empty(16, 8), torch.empty(8), torch.empty(4, 4)
    torch.nn.init.normal_(a, std=0.02), torch.nn.init.zeros_(b), torch.nn.init.uniform_(c)
    assert list(result) == ["a", "b", "c"]
    for name, expected in zip("abc", (a, b, c), strict=True):
        assert as_bytes(result[name]) == as_bytes(expected)


def test_module_is_the_state_dict_torch_builds(server):
    layers = [{"type": "Linear", "in_features": 12, "out_features": 6}, {"type": "ReLU"},
              {"type": "Linear", "in_features": 6, "out_features": 2}]
    with InitClient(server.url) as client:
        result = _endpoint_or_skip(client, lambda: client.module(layers, seed=0, device="cpu"))
    torch.manual_seed(0)
    expected = torch.nn.Sequential(torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).state_dict()
    assert list(result) == list(expected)
    for name, tensor in expected.items():
        assert as_bytes(result[name]) == as_bytes(tensor)


# ---- retries and errors, with httpx.MockTransport ----------------------------------------------


def _safetensors_answer(values: np.ndarray, seed: int = 0) -> httpx.Response:
    metadata = {"request": json.dumps({"seed": seed}), "provenance": json.dumps({"device": "cpu"}),
                "stats": json.dumps({"weight": {"numel": int(values.size)}})}
    body = safetensors.numpy.save({"weight": values}, metadata=metadata)
    return httpx.Response(200, content=body, headers={"x-init-seed": str(seed)})


def _sequence(*responses: httpx.Response, seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return queue.pop(0)

    return httpx.MockTransport(handler)


def test_429_and_503_are_retried_after_retry_after():
    delays: list[float] = []
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    transport = _sequence(
        httpx.Response(429, json={"detail": "queue full"}, headers={"Retry-After": "2"}),
        httpx.Response(503, json={"detail": "out of memory"}, headers={"Retry-After": "1"}),
        _safetensors_answer(values),
    )
    with InitClient("http://initsvc.test", transport=transport, sleep=delays.append) as client:
        result = client.tensor([2, 3], "uniform", as_numpy=True)
    assert delays == [2.0, 1.0]
    assert np.array_equal(result.tensor, values) and result.stats == {"numel": 6}


def test_without_retry_after_the_backoff_doubles_and_the_last_error_is_raised():
    delays: list[float] = []
    seen: list[httpx.Request] = []
    busy = [httpx.Response(429, json={"detail": "queue for cpu is full (64 waiting)"}) for _ in range(4)]
    with InitClient("http://initsvc.test", retries=3, transport=_sequence(*busy, seen=seen),
                    sleep=delays.append) as client:
        with pytest.raises(Busy) as caught:
            client.gain("relu")
    assert delays == [0.5, 1.0, 2.0] and len(seen) == 4
    assert caught.value.status == 429 and str(caught.value) == "queue for cpu is full (64 waiting)"


def test_a_retry_after_beyond_the_cap_is_raised_at_once_with_its_value():
    delays: list[float] = []
    transport = _sequence(httpx.Response(503, json={"detail": "draining"}, headers={"Retry-After": "3600"}))
    with InitClient("http://initsvc.test", transport=transport, sleep=delays.append) as client:
        with pytest.raises(Unavailable) as caught:
            client.devices()
    assert delays == [] and caught.value.retry_after == 3600.0


def test_a_refused_connection_is_raised_at_once_without_retries():
    delays: list[float] = []
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with InitClient("http://initsvc.test", retries=2, transport=httpx.MockTransport(refuse),
                    sleep=delays.append) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            client.schemes()
    assert delays == [] and len(attempts) == 1
    message = str(caught.value)  # what to do about it, and the reason
    assert "nothing answers at http://initsvc.test" in message and "initsvc serve" in message
    assert "INITSVC_URL" in message and "connection refused" in message


def test_a_url_without_a_scheme_is_http_as_curl_reads_it():
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"devices": []})

    with InitClient("localhost:8123", transport=httpx.MockTransport(record)) as client:
        assert client.base_url == "http://localhost:8123"
        client.devices()
    assert seen == ["http://localhost:8123/v1/devices"]


def test_422_is_not_retried_and_keeps_every_problem():
    delays: list[float] = []
    detail = [{"loc": ["body", "init", "normal", "std"], "msg": "Input should be greater than or equal to 0",
               "type": "greater_than_equal"},
              {"loc": ["body", "dtype"], "msg": "Input should be 'float16', 'bfloat16', 'float32' or 'float64'",
               "type": "literal_error"}]
    transport = _sequence(httpx.Response(422, json={"detail": detail}))
    with InitClient("http://initsvc.test", transport=transport, sleep=delays.append) as client:
        with pytest.raises(InvalidRecipe) as caught:
            client.tensor([3], "normal", std=-1.0)
    assert delays == [] and caught.value.detail == detail and caught.value.problems == detail
    assert str(caught.value) == ("body.init.normal.std: Input should be greater than or equal to 0; "
                                 "body.dtype: Input should be 'float16', 'bfloat16', 'float32' or 'float64'")


@pytest.mark.parametrize(
    ("status", "error"),
    [pytest.param(401, Unauthorized, id="401"), pytest.param(413, TooLarge, id="413"),
     pytest.param(404, InitServiceError, id="404")],
)
def test_statuses_map_to_exceptions_with_detail(status, error):
    transport = _sequence(httpx.Response(status, json={"detail": f"status {status} detail"}))
    with InitClient("http://initsvc.test", transport=transport, sleep=lambda s: None) as client:
        with pytest.raises(error) as caught:
            client.fans([4, 4])
    assert type(caught.value) is error and caught.value.status == status
    assert caught.value.detail == f"status {status} detail"


def test_url_and_api_key_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("INITSVC_URL", "http://from-env.test:9000/prefix")
    monkeypatch.setenv("INITSVC_API_KEY", "s3cret")
    seen: list[httpx.Request] = []
    transport = _sequence(httpx.Response(200, json={"nonlinearity": "tanh", "param": None, "gain": 5 / 3}), seen=seen)
    with InitClient(transport=transport) as client:
        assert client.gain("tanh") == 5 / 3
        assert "s3cret" not in repr(client)
    assert str(seen[0].url) == "http://from-env.test:9000/prefix/v1/gain?nonlinearity=tanh"
    assert seen[0].headers["authorization"] == "Bearer s3cret"


def test_post_body_carries_only_what_was_given():
    seen: list[httpx.Request] = []
    transport = _sequence(_safetensors_answer(np.zeros((2, 2), np.float32)), seen=seen)
    with InitClient("http://initsvc.test", transport=transport) as client:
        client.tensor(np.array([2, 2]), "xavier_uniform", gain={"nonlinearity": "leaky_relu", "param": 0.2},
                      seed=np.uint64(2**63), slice=[None, slice(0, None)], as_numpy=True)
    assert json.loads(seen[0].content) == {
        "shape": [2, 2], "init": {"scheme": "xavier_uniform", "gain": {"nonlinearity": "leaky_relu", "param": 0.2}},
        "seed": 2**63, "slice": [None, [0, 2]],
    }
    assert seen[0].headers["accept"] == "application/octet-stream"


def test_module_and_tensors_bodies():
    seen: list[httpx.Request] = []
    answers = [_safetensors_answer(np.zeros(2, np.float32)) for _ in range(2)]
    with InitClient("http://initsvc.test", transport=_sequence(*answers, seen=seen)) as client:
        client.tensors({"w": {"shape": "4,2", "init": {"scheme": "ones"}}}, seed=1, as_numpy=True)
        client.module({"fc": {"type": "Linear", "in_features": 2, "out_features": 1}},
                      overrides={"fc.weight": {"scheme": "zeros"}}, dtype="float64", as_numpy=True)
    assert seen[0].url.path == "/v1/tensors" and json.loads(seen[0].content) == {
        "seed": 1, "tensors": [{"name": "w", "shape": [4, 2], "init": {"scheme": "ones"}}]}
    assert seen[1].url.path == "/v1/module" and json.loads(seen[1].content) == {
        "dtype": "float64", "layers": {"fc": {"type": "Linear", "in_features": 2, "out_features": 1}},
        "overrides": [{"param": "fc.weight", "init": {"scheme": "zeros"}}]}


def test_async_client_retries_with_its_injected_sleep():
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    transport = _sequence(httpx.Response(429, json={"detail": "busy"}, headers={"Retry-After": "3"}),
                          httpx.Response(200, json={"fan_in": 2, "fan_out": 4, "receptive_field": 1}))

    async def run():
        async with AsyncInitClient("http://initsvc.test", transport=transport, sleep=record) as client:
            return await client.fans([4, 2])

    assert asyncio.run(run())["fan_in"] == 2 and delays == [3.0]


def test_a_cut_short_answer_is_an_error_not_a_short_tensor_or_file(tmp_path):
    body = _safetensors_answer(np.zeros((4, 4), np.float32)).content
    short = [httpx.Response(200, content=body[:-8], headers={"content-length": str(len(body))}) for _ in range(2)]
    with InitClient("http://initsvc.test", transport=_sequence(*short)) as client:
        with pytest.raises(MalformedAnswer, match=f"cut short: {len(body) - 8} of {len(body)} bytes"):
            client.tensor([4, 4], "zeros", as_numpy=True)
        with pytest.raises(MalformedAnswer):
            client.download([4, 4], "zeros", path=tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []



class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An answer's body in chunks, for either client, remembering whether it was closed."""

    def __init__(self, *chunks: bytes):
        self.chunks = chunks
        self.closed = False

    def __iter__(self):
        yield from self.chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def _call(use_async: bool, transport: httpx.MockTransport, method: str, *args, **kwargs):
    """``client.<method>(*args, **kwargs)`` on a blocking or an async client over ``transport``."""
    if not use_async:
        with InitClient("http://initsvc.test", transport=transport, sleep=lambda s: None) as client:
            return getattr(client, method)(*args, **kwargs)

    async def pause(seconds: float) -> None:
        pass

    async def run():
        async with AsyncInitClient("http://initsvc.test", transport=transport, sleep=pause) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


BOTH_CLIENTS = [pytest.param(False, id="blocking"), pytest.param(True, id="async")]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("use_async", BOTH_CLIENTS)
def test_a_progress_callback_that_raises_stops_the_download_removes_the_part_file_and_closes_the_answer(
        tmp_path, use_async):
    data = _safetensors_answer(np.ones((8, 8), np.float32)).content
    body = _Body(data[:100], data[100:])
    transport = _sequence(httpx.Response(200, stream=body, headers={"content-length": str(len(data))}))
    calls = []

    def progress(done: int, total: int | None) -> None:
        calls.append((done, total))
        if done:
            raise _Stop

    with pytest.raises(_Stop):
        _call(use_async, transport, "download", [8, 8], "ones", path=tmp_path / "w.safetensors", progress=progress)
    assert calls == [(0, len(data)), (100, len(data))]
    assert list(tmp_path.iterdir()) == [] and body.closed


@pytest.mark.parametrize("use_async", BOTH_CLIENTS)
def test_retried_answers_are_closed_and_the_last_one_is_returned(use_async):
    bodies = [_Body(b'{"detail": "busy"}'), _Body(b'{"detail": "draining"}'), _Body(b'{"fan_in": 2, "fan_out": 4}')]
    transport = _sequence(httpx.Response(429, stream=bodies[0], headers={"retry-after": "0"}),
                          httpx.Response(503, stream=bodies[1]), httpx.Response(200, stream=bodies[2]))
    assert _call(use_async, transport, "fans", [4, 2]) == {"fan_in": 2, "fan_out": 4}
    assert [body.closed for body in bodies] == [True, True, True]


@pytest.mark.parametrize("use_async", BOTH_CLIENTS)
def test_an_error_answer_whose_retries_run_out_is_raised_with_every_answer_closed(use_async):
    bodies = [_Body(b'{"detail": "queue full"}') for _ in range(4)]  # the first try and 3 retries
    transport = _sequence(*(httpx.Response(429, stream=body, headers={"retry-after": "0"}) for body in bodies))
    with pytest.raises(Busy, match="queue full"):
        _call(use_async, transport, "schemes")
    assert [body.closed for body in bodies] == [True] * 4


def test_the_blocking_and_async_clients_have_the_same_methods():
    def methods(cls: type) -> dict[str, object]:
        return {name: value for name, value in vars(cls).items()
                if callable(value) and name not in {"close", "aclose"} and not name.startswith("__")
                and name not in {"_run", "_perform"}}

    blocking, awaiting = methods(InitClient), methods(AsyncInitClient)
    assert blocking.keys() == awaiting.keys() and {"tensor", "download", "devices", "_models_answer"} <= blocking.keys()
    for name in blocking:
        assert inspect.signature(blocking[name]) == inspect.signature(awaiting[name]), name
        assert inspect.getdoc(blocking[name]) == inspect.getdoc(awaiting[name]) and inspect.getdoc(blocking[name])
        assert not inspect.iscoroutinefunction(blocking[name]) and inspect.iscoroutinefunction(awaiting[name])
    assert str(inspect.signature(InitClient.gain)) == "(self, nonlinearity: 'str', param: 'float | None' = None) -> 'float'"


# ---- without torch -------------------------------------------------------------------------------

NO_TORCH = """
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, NoTorch())
"""


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_importing_the_client_loads_neither_torch_nor_numpy():
    done = _run_without_torch("""
        import service.client
        print(json.dumps(sorted(m for m in ("torch", "numpy") if m in sys.modules)))
    """)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_as_numpy_works_where_torch_cannot_be_imported(server):
    done = _run_without_torch(f"""
        from service.client import InitClient
        with InitClient({server.url!r}) as client:
            bf16 = client.tensor([20, 30], "kaiming_uniform", a=5 ** 0.5, dtype="bfloat16", device="cpu", seed=0,
                                 as_numpy=True)
            f16 = client.tensor([20, 30], "normal", dtype="float16", device="cpu", seed=1, as_numpy=True)
            try:
                client.tensor([2], "zeros")
                hint = None
            except ImportError as exc:
                hint = str(exc)
        assert "torch" not in sys.modules
        print(json.dumps({{"bf16": bf16.tensor.tobytes().hex(), "bf16_dtype": str(bf16.tensor.dtype),
                          "f16": f16.tensor.tobytes().hex(), "f16_dtype": str(f16.tensor.dtype), "hint": hint}}))
    """)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    bf16 = reference([20, 30], "kaiming_uniform", {"a": SQRT5}, "bfloat16", 0).float().numpy()
    f16 = reference([20, 30], "normal", dtype="float16", seed=1).numpy()
    assert out["bf16_dtype"] == "float32" and bytes.fromhex(out["bf16"]) == bf16.tobytes()
    assert out["f16_dtype"] == "float16" and bytes.fromhex(out["f16"]) == f16.tobytes()
    assert "as_numpy=True" in out["hint"]


def test_download_without_content_length_reports_an_unknown_total(tmp_path):
    body = _safetensors_answer(np.ones((8, 8), np.float32)).content
    chunks = [body[:100], body[100:]]
    transport = _sequence(httpx.Response(200, content=iter(chunks)))
    calls = []
    with InitClient("http://initsvc.test", transport=transport) as client:
        written = client.download([8, 8], "ones", path=tmp_path / "w.safetensors",
                                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, None), (100, None), (len(body), None)]
    assert written.nbytes == len(body) and (tmp_path / "w.safetensors").read_bytes() == body


@pytest.mark.parametrize(
    ("header", "seconds"),
    [pytest.param("7", 7.0, id="delta-seconds"), pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="past-date"),
     pytest.param("soon", None, id="garbage"), pytest.param(None, None, id="absent")],
)
def test_retry_after_forms(header, seconds):
    from service.client.errors import parse_retry_after

    assert parse_retry_after(header) == seconds


def test_the_clients_enumerations_are_the_servers():
    from typing import get_args

    from service.client import _requests
    from service.schemas import requests as schemas

    assert get_args(_requests.DType) == get_args(schemas.DType)
    assert get_args(_requests.Rng) == get_args(schemas.Rng)


# ---- answers that are not what they claim, and where downloads go ---------------------------------


class _CutStream(httpx.SyncByteStream):
    """A body that ends in a protocol error after ``sent`` bytes, as a server that dies does."""

    def __init__(self, data: bytes):
        self.data = data

    def __iter__(self):
        yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def _safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def _serving(answer):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return httpx.MockTransport(handler), seen


def test_a_body_cut_short_by_the_connection_is_a_malformed_answer(tmp_path):
    body = safetensors.numpy.save({"weight": np.zeros(64, dtype=np.float32)})
    transport, _ = _serving(lambda r: httpx.Response(200, headers={"content-length": str(len(body))},
                                                     stream=_CutStream(body[:100])))
    with InitClient("http://initsvc.test", transport=transport, retries=0) as client:
        with pytest.raises(MalformedAnswer, match=r"cut short: 100 of \d+ bytes"):
            client.tensor([64], "zeros")
        with pytest.raises(MalformedAnswer, match="cut short"):
            client.download([64], "zeros", path=tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


@pytest.mark.parametrize("body,says", [
    (_safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8), "not within"),
    (_safetensors_bytes({"w": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}}, b"\0" * 16), "not a tensor"),
    (b"\x10\0\0\0\0\0\0\0{not json at all", "not JSON"),
])
def test_a_header_the_body_does_not_match_is_a_malformed_answer(body, says):
    transport, _ = _serving(lambda r: httpx.Response(200, content=body))
    with InitClient("http://initsvc.test", transport=transport, retries=0) as client:
        with pytest.raises(MalformedAnswer, match=says):
            client.tensor([4], "zeros")


def test_a_2xx_that_is_not_json_is_a_malformed_answer():
    transport, _ = _serving(lambda r: httpx.Response(200, content=b"<html>proxy login</html>"))
    with InitClient("http://initsvc.test", transport=transport, retries=0) as client:
        with pytest.raises(MalformedAnswer, match="not the JSON"):
            client.schemes()


def test_download_checks_the_safetensors_header_and_leaves_nothing_behind(tmp_path):
    transport, _ = _serving(lambda r: httpx.Response(200, content=b"28 bytes that are not a file"))
    with InitClient("http://initsvc.test", transport=transport, retries=0) as client:
        with pytest.raises(MalformedAnswer, match="header"):
            client.download([4], "zeros", path=tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_download_refuses_a_path_it_cannot_write_before_asking_and_keeps_the_users_files(tmp_path):
    body = safetensors.numpy.save({"weight": np.ones(3, dtype=np.float32)})
    transport, seen = _serving(lambda r: httpx.Response(200, content=body))
    mine = tmp_path / "w.safetensors.part"
    mine.write_bytes(b"the user's own file")
    with InitClient("http://initsvc.test", transport=transport, retries=0) as client:
        with pytest.raises(IsADirectoryError, match="is a directory"):
            client.download([3], "ones", path=tmp_path)
        with pytest.raises(FileNotFoundError, match="is not a directory"):
            client.download([3], "ones", path=tmp_path / "missing" / "w.safetensors")
        assert seen == []  # nothing was asked of the server
        client.download([3], "ones", path=tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").read_bytes() == body
    assert mine.read_bytes() == b"the user's own file"


def test_tensors_of_no_bytes_keep_the_requests_order(server):
    entries = [{"name": "z", "shape": [0], "init": {"scheme": "normal"}},
               {"name": "a", "shape": [2], "init": {"scheme": "normal"}},
               {"name": "m", "shape": [0, 3], "init": {"scheme": "normal"}},
               {"name": "b", "shape": [1], "init": {"scheme": "normal"}}]
    with InitClient(server.url) as client:
        found = client.tensors(entries, seed=0, device="cpu")
        assert list(found.tensors) == ["z", "a", "m", "b"] and list(found.stats) == ["z", "a", "m", "b"]
        as_numpy = client.tensors(entries, seed=0, device="cpu", as_numpy=True)
        assert list(as_numpy.tensors) == ["z", "a", "m", "b"]


@pytest.mark.parametrize("given,want", [
    ("10:20", [[10, 20], None]),
    ((slice(10, 20),), [[10, 20], None]),
    (5, [[5, 6], None]),
    ("-10:,:", [[90, 100], None]),
    ((slice(-10, None), None), [[90, 100], None]),
    (":,-1", [None, [49, 50]]),
    ([[0, 2], None], [[0, 2], None]),
])
def test_a_slice_in_numpy_notation_is_completed_with_the_shape(server, given, want):
    full = reference([100, 50], "normal", {}, seed=9)
    with InitClient(server.url) as client:
        got = client.tensor([100, 50], "normal", seed=9, device="cpu", slice=given)
    assert got.request["slice"] == want
    index = tuple(slice(*b) if b else slice(None) for b in want)
    assert as_bytes(got.tensor) == as_bytes(full[index].contiguous())


def test_numpy_and_torch_scalars_and_dtypes_are_taken_as_what_they_hold(server):
    with InitClient(server.url) as client:
        got = client.tensor(np.int64(6), "normal", std=np.float32(0.5), mean=torch.tensor(0.25),
                            seed=np.uint64(3), device="cpu", dtype=torch.float16)
        same = client.tensor([6], "normal", std=0.5, mean=0.25, seed=3, device="cpu", dtype="float16")
        assert as_bytes(got.tensor) == as_bytes(same.tensor) and got.tensor.dtype == torch.float16
        assert client.tensor([2], "zeros", dtype=np.dtype("float64"), device="cpu").tensor.dtype == torch.float64
        assert client.tensor([2], "zeros", dtype=np.float16, device="cpu").tensor.dtype == torch.float16
        with pytest.raises(TypeError, match="JSON body"):
            client.tensor([2], "normal", std=np.ones(2))
