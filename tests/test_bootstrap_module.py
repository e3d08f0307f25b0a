"""Bootstrapping a whole model: POST /v1/module equals `torch.manual_seed(seed); nn.Sequential(...)`
bit for bit, for every supported layer and for real stacks; GET /v1/layers describes them."""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from safetensors.torch import load
from torch import nn

from service.codec.header import decode_header
from service.engine.global_rng import GLOBAL_RNG_LOCK
from service.engine.layers import LAYER_CLASSES, LayerCall, default_distributions
from service.errors import RecipeError
from service.planning.layers import LayerQuery, describe_layer
from service.schemas.layers import LAYER_MODELS
from service.settings import Settings
from service.workers.module_jobs import ModuleJob, run_module_job
from tests.conftest import live_server, requires_cuda
from tests.torch_reference import DTYPES, as_bytes, reference

SMALL_LINEAR = {"type": "Linear", "in_features": 3, "out_features": 2}

# One case per supported type, with non-default arguments where they change the state_dict.
LAYER_CASES = [
    {"type": "Linear", "in_features": 12, "out_features": 7},
    {"type": "Bilinear", "in1_features": 5, "in2_features": 4, "out_features": 3},
    {"type": "Conv1d", "in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 2, "padding": "same"},
    {"type": "Conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": [3, 5], "stride": [2, 1], "padding_mode": "reflect"},
    {"type": "Conv3d", "in_channels": 2, "out_channels": 4, "kernel_size": 2, "bias": False},
    {"type": "ConvTranspose1d", "in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 2},
    {"type": "ConvTranspose2d", "in_channels": 3, "out_channels": 5, "kernel_size": [2, 3], "stride": 2, "output_padding": 1},
    {"type": "ConvTranspose3d", "in_channels": 2, "out_channels": 3, "kernel_size": 2},
    {"type": "MaxPool1d", "kernel_size": 2},
    {"type": "MaxPool2d", "kernel_size": [2, 3], "stride": 2, "padding": 1, "ceil_mode": True},
    {"type": "AvgPool1d", "kernel_size": 3, "stride": 1},
    {"type": "AvgPool2d", "kernel_size": 2, "divisor_override": 3},
    {"type": "AdaptiveAvgPool1d", "output_size": 4},
    {"type": "AdaptiveAvgPool2d", "output_size": [None, 3]},
    {"type": "Embedding", "num_embeddings": 20, "embedding_dim": 6, "padding_idx": 3, "max_norm": 1.0},
    {"type": "EmbeddingBag", "num_embeddings": 15, "embedding_dim": 4, "mode": "sum", "padding_idx": -1},
    {"type": "RNN", "input_size": 5, "hidden_size": 6, "num_layers": 2, "nonlinearity": "relu", "bidirectional": True, "dropout": 0.1},
    {"type": "LSTM", "input_size": 5, "hidden_size": 8, "num_layers": 2, "proj_size": 3, "batch_first": True},
    {"type": "GRU", "input_size": 4, "hidden_size": 5, "bias": False},
    {"type": "RNNCell", "input_size": 3, "hidden_size": 4, "nonlinearity": "relu"},
    {"type": "LSTMCell", "input_size": 3, "hidden_size": 4},
    {"type": "GRUCell", "input_size": 3, "hidden_size": 4},
    {"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2, "kdim": 4, "vdim": 6, "add_bias_kv": True},
    {"type": "TransformerEncoderLayer", "d_model": 16, "nhead": 4, "dim_feedforward": 32, "activation": "gelu", "norm_first": True},
    {"type": "TransformerDecoderLayer", "d_model": 16, "nhead": 2, "dim_feedforward": 24, "bias": False},
    {"type": "LayerNorm", "normalized_shape": [4, 6], "eps": 1e-6},
    {"type": "RMSNorm", "normalized_shape": 8},
    {"type": "GroupNorm", "num_groups": 2, "num_channels": 6},
    {"type": "BatchNorm1d", "num_features": 5},
    {"type": "BatchNorm2d", "num_features": 4, "momentum": None, "affine": False},
    {"type": "BatchNorm3d", "num_features": 3, "bias": False},
    {"type": "InstanceNorm1d", "num_features": 4, "affine": True, "track_running_stats": True},
    {"type": "InstanceNorm2d", "num_features": 3},
    {"type": "InstanceNorm3d", "num_features": 2, "affine": True},
    {"type": "PReLU", "num_parameters": 3, "init": 0.1},
    {"type": "ReLU"},
    {"type": "GELU", "approximate": "tanh"},
    {"type": "SiLU"},
    {"type": "Mish"},
    {"type": "Hardswish"},
    {"type": "Tanh"},
    {"type": "Sigmoid"},
    {"type": "LeakyReLU", "negative_slope": 0.2},
    {"type": "ELU", "alpha": 0.5},
    {"type": "Softplus", "beta": 2.0},
    {"type": "Softmax", "dim": -1},
    {"type": "LogSoftmax", "dim": 1},
    {"type": "Dropout", "p": 0.2},
    {"type": "Flatten", "start_dim": 0},
    {"type": "Identity"},
]

STACKS = {
    "small-cnn": [
        {"type": "Conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "BatchNorm2d", "num_features": 8},
        {"type": "ReLU"},
        {"type": "MaxPool2d", "kernel_size": 2},
        {"type": "Flatten"},
        {"type": "Linear", "in_features": 8 * 4 * 4, "out_features": 10},
    ],
    "lstm-language-model": [
        {"type": "Embedding", "num_embeddings": 100, "embedding_dim": 16, "padding_idx": 0},
        {"type": "LSTM", "input_size": 16, "hidden_size": 32, "num_layers": 2, "bidirectional": True, "batch_first": True},
        {"type": "Linear", "in_features": 64, "out_features": 100},
    ],
    "transformer-encoder-block": [
        {"type": "TransformerEncoderLayer", "d_model": 32, "nhead": 4, "dim_feedforward": 64, "batch_first": True},
        {"type": "LayerNorm", "normalized_shape": 32},
        {"type": "Linear", "in_features": 32, "out_features": 5},
    ],
    "vit-patch-embed": [
        {"type": "Conv2d", "in_channels": 3, "out_channels": 48, "kernel_size": 8, "stride": 8},
        {"type": "Flatten", "start_dim": 2},
        {"type": "LayerNorm", "normalized_shape": 48},
    ],
}


def _case_id(cfg: dict) -> str:
    return cfg["type"]


def torch_layer(cfg: dict, dtype: str, device: str) -> nn.Module:
    """The layer as a torch script writes it; the class looked up on torch.nn by the test, on purpose
    independently of the service's whitelist."""
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k != "type"}
    cls = getattr(nn, cfg["type"])
    params = inspect.signature(cls).parameters
    own_kwargs = cls.__init__ is not nn.Module.__init__ and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    takes_factory = "dtype" in params or own_kwargs  # RNN, LSTM and GRU take **kwargs
    return cls(**args, device=device, dtype=DTYPES[dtype]) if takes_factory else cls(**args)


def reference_module(layers, seed: int, dtype: str = "float32", device: str = "cpu", inits=()) -> nn.Module:
    """`torch.manual_seed(seed); m = nn.Sequential(...)`, then each init call on its parameter. The
    live server shares this process, so the script takes the process's global-RNG lock too."""
    with GLOBAL_RNG_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = torch.get_num_threads()
        torch.set_num_threads(1)  # orthogonal's QR with INITSVC_QR_THREADS=1
        try:
            torch.manual_seed(seed)
            if isinstance(layers, dict):
                m = nn.Sequential(OrderedDict((name, torch_layer(cfg, dtype, device)) for name, cfg in layers.items()))
            else:
                m = nn.Sequential(*[torch_layer(cfg, dtype, device) for cfg in layers])
            with torch.no_grad():
                for param, init_call in inits:
                    init_call(m.get_parameter(param))
            return m
        finally:
            torch.set_num_threads(previous)


def post_module(http, layers, seed=0, dtype="float32", device="cpu", **extra) -> httpx.Response:
    return http.post("/v1/module", json={"layers": layers, "seed": seed, "dtype": dtype, "device": device, **extra})


def assert_same_state(response: httpx.Response, module: nn.Module) -> dict[str, torch.Tensor]:
    assert response.status_code == 200, response.text
    got = load(response.content)
    expected = module.state_dict()
    assert set(got) == set(expected)
    for key, t in expected.items():
        assert got[key].dtype == t.dtype, key
        assert list(got[key].shape) == list(t.shape), key
        assert as_bytes(got[key]) == as_bytes(t.cpu()), key
    module.load_state_dict(got, strict=True)
    return got


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cfg", [pytest.param(c, id=_case_id(c)) for c in LAYER_CASES])
def test_each_layer_type_is_bit_identical_to_torch_and_loads_strictly(http, cfg, dtype):
    layers = [cfg, SMALL_LINEAR]  # the Linear after it shows the stream continues where torch's does
    assert_same_state(post_module(http, layers, seed=7, dtype=dtype), reference_module(layers, 7, dtype))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(STACKS))
def test_real_stacks_are_bit_identical_to_torch(http, name, dtype):
    layers = STACKS[name]
    assert_same_state(post_module(http, layers, seed=2024, dtype=dtype), reference_module(layers, 2024, dtype))


def test_every_supported_type_has_a_case_and_the_schema_matches_the_whitelist():
    assert set(LAYER_MODELS) == set(LAYER_CLASSES)
    assert {c["type"] for c in LAYER_CASES} == set(LAYER_MODELS)


@pytest.mark.parametrize("cfg", [pytest.param(c, id=_case_id(c)) for c in LAYER_CASES])
def test_size_guard_equals_the_largest_tensor_torch_makes(cfg):
    layer = LAYER_MODELS[cfg["type"]].model_validate(cfg, strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch_layer(cfg, "float32", "meta")
    assert layer.largest_elements() == max((t.numel() for t in module.state_dict().values()), default=0)


@pytest.mark.parametrize("cfg", [pytest.param(c, id=_case_id(c)) for c in LAYER_CASES])
def test_every_state_entry_has_a_default_init_for_its_expected_stats(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch_layer(cfg, "float32", "meta")
    assert set(default_distributions(module)) == set(module.state_dict())


@pytest.mark.parametrize("name", [n for n in LAYER_MODELS if n not in ("RNN", "LSTM", "GRU")])
def test_layer_arguments_and_defaults_are_torchs(name):
    """RNN, LSTM and GRU take *args in torch's signature; their defaults are checked by the parity tests."""
    torch_params = inspect.signature(LAYER_CLASSES[name]).parameters
    for arg, field in LAYER_MODELS[name].model_fields.items():
        if arg == "type":
            continue
        assert arg in torch_params, f"{name} has no argument {arg}"
        default = torch_params[arg].default
        if field.is_required():
            assert default is inspect.Parameter.empty, f"{name}.{arg} is optional in torch"
        elif not callable(default):  # TransformerEncoderLayer's activation defaults to F.relu: "relu" here
            assert field.default == default, f"{name}.{arg}: {field.default!r} != torch's {default!r}"


def test_named_layers_give_named_keys_in_the_objects_order(http):
    layers = {
        "stem": {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3},
        "norm": {"type": "BatchNorm2d", "num_features": 4},
        "act": {"type": "ReLU"},
        "pool": {"type": "AdaptiveAvgPool2d", "output_size": 1},
        "flat": {"type": "Flatten"},
        "head": {"type": "Linear", "in_features": 4, "out_features": 3},
    }
    got = assert_same_state(post_module(http, layers, seed=3), reference_module(layers, 3))
    assert "stem.weight" in got and "head.bias" in got and got["norm.num_batches_tracked"].dtype == torch.int64


def test_named_layer_order_survives_the_sorted_header_and_the_etag(http):
    a, b = {"type": "Linear", "in_features": 4, "out_features": 3}, {"type": "Linear", "in_features": 3, "out_features": 2}
    ab, ba = post_module(http, {"b": b, "a": a}, seed=1), post_module(http, {"a": a, "b": b}, seed=1)
    assert ab.headers["etag"] != ba.headers["etag"]
    assert_same_state(ab, reference_module({"b": b, "a": a}, 1))
    request = json.loads(decode_header(ab.content)[0]["request"])
    assert request["layer_order"] == ["b", "a"] and list(request["layers"]) == ["a", "b"]  # written sorted
    replayed = http.post("/v1/module", json=request)
    assert replayed.content == ab.content


def test_layer_order_naming_other_layers_is_422(http):
    r = post_module(http, {"a": SMALL_LINEAR}, layer_order=["a", "b"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "layer_order"]


def test_overrides_apply_in_order_from_the_same_stream(http):
    layers = [
        {"type": "Linear", "in_features": 8, "out_features": 6},
        {"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2},
        {"type": "Linear", "in_features": 6, "out_features": 4},
    ]
    overrides = [
        {"param": "2.weight", "init": {"scheme": "sparse", "sparsity": 0.5}},
        {"param": "1.in_proj_weight", "init": {"scheme": "trunc_normal", "std": 0.02}},
        {"param": "0.weight", "init": {"scheme": "orthogonal"}},
        {"param": "0.bias", "init": {"scheme": "zeros"}},
        {"param": "2.weight", "init": {"scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"}},
    ]
    inits = [
        ("2.weight", lambda p: nn.init.sparse_(p, 0.5)),
        ("1.in_proj_weight", lambda p: nn.init.trunc_normal_(p, std=0.02)),
        ("0.weight", nn.init.orthogonal_),
        ("0.bias", nn.init.zeros_),
        ("2.weight", lambda p: nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")),
    ]
    r = post_module(http, layers, seed=11, overrides=overrides)
    assert_same_state(r, reference_module(layers, 11, inits=inits))
    stats = json.loads(decode_header(r.content)[0]["stats"])
    assert stats["2.weight"]["std_used"] == pytest.approx(math.sqrt(2) / math.sqrt(4))  # the last override's


def test_override_of_a_missing_param_is_422_naming_it_with_close_names(http):
    r = post_module(http, [SMALL_LINEAR], overrides=[{"param": "0.weigth", "init": {"scheme": "zeros"}}])
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "overrides", 0, "param"]
    assert "'0.weigth'" in error["msg"] and "did you mean '0.weight'" in error["msg"] and "0.bias" in error["msg"]


def test_override_of_a_buffer_is_422_saying_it_is_a_buffer(http):
    r = post_module(http, [{"type": "BatchNorm1d", "num_features": 3}], overrides=[{"param": "0.running_var", "init": {"scheme": "ones"}}])
    assert r.status_code == 422 and "buffer" in r.json()["detail"][0]["msg"]


def test_override_breaking_the_shape_rule_is_422_naming_the_param(http):
    r = post_module(http, [SMALL_LINEAR], overrides=[{"param": "0.bias", "init": {"scheme": "xavier_uniform"}}])
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "overrides", 0, "param"] and "0.bias" in error["msg"]


def test_torch_warnings_during_construction_come_back_in_provenance(http):
    layers = [{"type": "LSTM", "input_size": 4, "hidden_size": 4, "dropout": 0.5}]
    r = post_module(http, layers, seed=1)
    assert_same_state(r, reference_module(layers, 1))
    provenance = json.loads(decode_header(r.content)[0]["provenance"])
    assert any("dropout" in w and "num_layers" in w for w in provenance["warnings"])


def test_stats_compare_each_entry_with_its_default_init(http):
    layers = [
        {"type": "Linear", "in_features": 64, "out_features": 32},
        {"type": "Embedding", "num_embeddings": 50, "embedding_dim": 8},
        {"type": "BatchNorm1d", "num_features": 4},
    ]
    r = http.post("/v1/module", json={"layers": layers, "seed": 0, "device": "cpu", "histogram_bins": 4}, headers={"accept": "application/json"})
    assert r.status_code == 200
    tensors = r.json()["tensors"]
    weight = tensors["0.weight"]["stats"]
    assert weight["fan_in"] == 64 and weight["bound"] == pytest.approx(1 / 8) and weight["expected"]["low"] == pytest.approx(-1 / 8)
    assert -1 / 8 <= weight["min"] and weight["max"] <= 1 / 8 and len(weight["histogram"]["counts"]) == 4
    assert tensors["0.bias"]["stats"]["expected"]["high"] == pytest.approx(1 / 8)
    assert tensors["1.weight"]["stats"]["expected"] == {"mean": 0.0, "std": 1.0, "low": None, "high": None}
    assert tensors["2.running_var"]["stats"]["expected"] == {"mean": 1.0, "std": 0.0, "low": 1.0, "high": 1.0}
    assert tensors["2.num_batches_tracked"]["dtype"] == "int64" and tensors["2.num_batches_tracked"]["shape"] == []


def test_stats_false_leaves_stats_out_and_keeps_the_bytes(http):
    layers = STACKS["small-cnn"]
    with_stats, without = post_module(http, layers, seed=5), post_module(http, layers, seed=5, stats=False)
    assert "stats" not in decode_header(without.content)[0]
    assert load(with_stats.content).keys() == load(without.content).keys()
    assert all(as_bytes(load(with_stats.content)[k]) == as_bytes(v) for k, v in load(without.content).items())


def test_same_request_same_bytes_and_etag_and_if_none_match_is_412(http):
    first, second = post_module(http, STACKS["vit-patch-embed"], seed=9), post_module(http, STACKS["vit-patch-embed"], seed=9)
    assert first.content == second.content and first.headers["etag"] == second.headers["etag"]
    assert first.headers["content-disposition"].startswith('attachment; filename="module.safetensors"')
    again = http.post("/v1/module", json={"layers": STACKS["vit-patch-embed"], "seed": 9, "device": "cpu", "dtype": "float32"},
                      headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 412


def test_omitted_seed_is_drawn_and_reported(http):
    r = http.post("/v1/module", json={"layers": [SMALL_LINEAR], "device": "cpu"})
    seed = int(r.headers["x-init-seed"])
    assert_same_state(r, reference_module([SMALL_LINEAR], seed))


def test_portable_rng_is_422_saying_modules_are_not_covered(http):
    r = post_module(http, [SMALL_LINEAR], rng="portable-v1")
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "rng"] and "portable mode does not cover modules" in error["msg"]


BAD_LAYERS = [
    pytest.param({"type": "Linear", "in_features": 0, "out_features": 2}, "in_features", id="linear-in-features-0"),
    pytest.param({"type": "MultiheadAttention", "embed_dim": 10, "num_heads": 3}, "num_heads", id="heads-not-dividing-embed-dim"),
    pytest.param({"type": "TransformerEncoderLayer", "d_model": 10, "nhead": 4}, "nhead", id="nhead-not-dividing-d-model"),
    pytest.param({"type": "GroupNorm", "num_groups": 4, "num_channels": 6}, "num_channels", id="groupnorm-groups-not-dividing"),
    pytest.param({"type": "Embedding", "num_embeddings": 5, "embedding_dim": 2, "padding_idx": 5}, "padding_idx", id="padding-idx-out-of-range"),
    pytest.param({"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2}, "groups", id="conv-groups-not-dividing"),
    pytest.param({"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "same"}, "padding", id="same-padding-strided"),
    pytest.param({"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": [3, 3, 3]}, "kernel_size", id="kernel-size-wrong-length"),
    pytest.param({"type": "RNN", "input_size": 3, "hidden_size": 4, "nonlinearity": "sigmoid"}, "nonlinearity", id="rnn-nonlinearity"),
    pytest.param({"type": "LSTM", "input_size": 3, "hidden_size": 4, "proj_size": 4}, "proj_size", id="proj-size-not-smaller"),
    pytest.param({"type": "Dropout", "p": 1.5}, "p", id="dropout-over-1"),
    pytest.param({"type": "TransformerEncoderLayer", "d_model": 8, "nhead": 2, "activation": "tanh"}, "activation", id="activation-not-builtin"),
    pytest.param({"type": "Linear", "in_features": 2, "out_features": 2, "bias": 1}, "bias", id="bias-not-a-bool"),
    pytest.param({"type": "Linear", "in_features": 2, "out_features": 2, "bais": False}, "bais", id="unknown-argument"),
]


@pytest.mark.parametrize("layer,argument", BAD_LAYERS)
def test_invalid_layer_is_422_naming_the_argument(http, layer, argument):
    r = post_module(http, [SMALL_LINEAR, layer])
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "layers", "list", 1, layer["type"], argument]
    assert error["msg"]


def test_unknown_layer_type_is_422_listing_the_known_ones(http):
    r = post_module(http, [{"type": "Conv4d", "in_channels": 1}])
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "layers", "list", 0] and "'Conv4d'" in error["msg"]
    assert all(f"'{name}'" in error["msg"] for name in ("Linear", "LSTM", "TransformerEncoderLayer", "ReLU"))


def test_layer_name_torch_refuses_is_422_naming_the_layer(http):
    r = post_module(http, {"forward": SMALL_LINEAR})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "layers", "forward"]
    dotted = post_module(http, {"a.b": SMALL_LINEAR})
    assert dotted.status_code == 422


def test_absurd_sizes_are_413_before_torch_sees_them(http):
    r = post_module(http, [{"type": "Conv3d", "in_channels": 2**31 - 1, "out_channels": 2**31 - 1, "kernel_size": 2**31 - 1}])
    assert r.status_code == 413 and r.json()["env_var"] == "INITSVC_MAX_ELEMENTS"


@pytest.fixture(scope="module")
def limited():
    with live_server(max_tensors=6, max_elements=1000, max_request_bytes=10000) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client


def test_too_many_parameters_and_buffers_is_413_naming_max_tensors(limited):
    r = post_module(limited, [{"type": "Linear", "in_features": 2, "out_features": 2}, {"type": "BatchNorm1d", "num_features": 2}])
    assert r.status_code == 413
    body = r.json()
    assert body["env_var"] == "INITSVC_MAX_TENSORS" and body["limit"] == 6 and body["value"] == 7
    assert "INITSVC_MAX_TENSORS is 6" in body["detail"]


def test_a_tensor_over_max_elements_is_413_naming_it(limited):
    r = post_module(limited, [{"type": "Linear", "in_features": 100, "out_features": 20}])
    assert r.status_code == 413
    body = r.json()
    assert body["env_var"] == "INITSVC_MAX_ELEMENTS" and body["value"] == 2000 and body["limit"] == 1000


def test_module_over_max_request_bytes_is_413_naming_it(limited):
    layers = [{"type": "Linear", "in_features": 30, "out_features": 30, "bias": False}] * 3
    r = post_module(limited, layers)
    assert r.status_code == 413
    body = r.json()
    assert body["env_var"] == "INITSVC_MAX_REQUEST_BYTES" and body["value"] == 3 * 900 * 4 and body["limit"] == 10000


def test_sixteen_concurrent_modules_equal_sequential_ones_beside_single_tensors(server):
    layers = STACKS["lstm-language-model"] + [{"type": "BatchNorm1d", "num_features": 100}]
    modules = [{"layers": layers, "seed": 100 + i, "device": "cpu"} for i in range(16)]
    tensors = [{"shape": [64, 48], "init": {"scheme": "kaiming_uniform"}, "seed": 500 + i, "device": "cpu"} for i in range(16)]
    expected_tensors = [reference([64, 48], "kaiming_uniform", {}, "float32", 500 + i) for i in range(16)]
    with httpx.Client(base_url=server.url, timeout=120) as client:
        sequential = [client.post("/v1/module", json=body).content for body in modules]
        jobs = [("/v1/module", b) for b in modules] + [("/v1/tensor", b) for b in tensors]
        jobs = [job for pair in zip(jobs[:16], jobs[16:], strict=True) for job in pair]  # interleaved
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda job: client.post(job[0], json=job[1]), jobs))
    assert [a.content for a in answers[0::2]] == sequential
    for answer, expected in zip(answers[1::2], expected_tensors, strict=True):
        assert as_bytes(load(answer.content)["weight"]) == as_bytes(expected)
    assert_same_state(answers[0], reference_module(layers, 100))


def test_module_jobs_on_many_threads_at_once_equal_sequential_ones():
    """Workers of different devices can build at the same time: the global-RNG section keeps
    their draws apart. Here eight threads run the job directly, bypassing the one-per-device worker."""
    calls = [LayerCall("0", "Linear", {"in_features": 32, "out_features": 32}), LayerCall("1", "GRU", {"input_size": 32, "hidden_size": 16})]
    jobs = [ModuleJob(layers=calls, overrides=(), seed=s, device="cpu", dtype="float32") for s in range(8)]

    def run(job):
        return [as_bytes(m.tensor) for m in run_module_job(job)]

    sequential = [run(job) for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(run, jobs * 3)) == sequential * 3


def test_the_section_restores_the_callers_global_rng():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    run_module_job(ModuleJob(layers=[LayerCall("0", "Linear", {"in_features": 4, "out_features": 4})], overrides=(), seed=0, device="cpu", dtype="float32"))
    assert torch.equal(torch.get_rng_state(), before)


def test_layer_catalog_lists_every_type_with_its_arguments(http):
    catalog = http.get("/v1/layers").json()["layers"]
    assert set(catalog) == set(LAYER_MODELS)
    linear = {a["name"]: a for a in catalog["Linear"]["arguments"]}
    assert linear["in_features"]["required"] is True and linear["bias"]["default"] is True
    assert catalog["ReLU"]["has_state"] is False and catalog["Linear"]["torch"] == "torch.nn.Linear"


def test_layer_query_gives_state_dict_keys_shapes_and_dtypes(http):
    linear = http.get("/v1/layers", params={"type": "Linear", "in_features": "3", "out_features": "4"}).json()
    assert [(e["key"], e["shape"], e["dtype"]) for e in linear["state_dict"]] == [("weight", [4, 3], "float32"), ("bias", [4], "float32")]
    assert linear["state_dict"][0]["default_init"]["bound"] == pytest.approx(1 / math.sqrt(3))
    bn = http.get("/v1/layers", params={"type": "BatchNorm2d", "num_features": "5", "dtype": "bfloat16"}).json()
    entries = {e["key"]: e for e in bn["state_dict"]}
    assert entries["num_batches_tracked"]["dtype"] == "int64" and entries["running_mean"]["kind"] == "buffer"
    assert entries["weight"]["dtype"] == "bfloat16"
    conv = http.get("/v1/layers", params={"type": "Conv2d", "in_channels": "3", "out_channels": "6", "kernel_size": "3,5", "bias": "false"}).json()
    assert [(e["key"], e["shape"]) for e in conv["state_dict"]] == [("weight", [6, 3, 3, 5])]


def test_layer_query_with_a_bad_argument_is_422_naming_it(http):
    r = http.get("/v1/layers", params={"type": "MultiheadAttention", "embed_dim": "10", "num_heads": "3"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "num_heads"]
    unknown = http.get("/v1/layers", params={"type": "Linear", "in_features": "3", "out_features": "4", "bais": "true"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["query", "bais"]
    bad_type = http.get("/v1/layers", params={"type": "Conv4d"})
    assert bad_type.status_code == 422 and "Conv2d" in bad_type.json()["detail"][0]["msg"]
    assert "did you mean 'Conv3d'?" in bad_type.json()["detail"][0]["msg"]
    assert "did you mean" not in http.get("/v1/layers", params={"type": "Zzzzzz"}).json()["detail"][0]["msg"]


DESCRIBED_LAYERS = [
    {"type": "Linear", "in_features": 6, "out_features": 5},
    {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": [3, 2], "groups": 1, "bias": True},
    {"type": "BatchNorm2d", "num_features": 4, "momentum": None},
    {"type": "Embedding", "num_embeddings": 9, "embedding_dim": 4, "padding_idx": 2},
    {"type": "LSTM", "input_size": 5, "hidden_size": 6, "num_layers": 2, "proj_size": 2, "bidirectional": True},
    {"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2, "kdim": 3, "vdim": 5, "add_bias_kv": True},
]


def _query_text(value) -> str:
    """A JSON value as /v1/layers reads it from a query string: lists comma-separated, JSON words."""
    if isinstance(value, list):
        return ",".join(_query_text(v) for v in value)
    return json.dumps(value)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cfg", DESCRIBED_LAYERS, ids=_case_id)
def test_layer_query_matches_the_torch_layer_built_in_the_test(http, cfg, dtype):
    params = {k: _query_text(v) for k, v in cfg.items() if k != "type"}
    r = http.get("/v1/layers", params={"type": cfg["type"], **params, "dtype": dtype})
    assert r.status_code == 200, r.text
    body = r.json()
    torch.manual_seed(0)
    layer = torch_layer(cfg, dtype, "cpu")
    state = layer.state_dict()
    parameters = {key for key, _ in layer.named_parameters()}
    names = {torch.bfloat16: "bfloat16", torch.float32: "float32", torch.int64: "int64"}
    assert [(e["key"], e["shape"], e["dtype"], e["kind"]) for e in body["state_dict"]] == [
        (key, list(t.shape), names[t.dtype], "parameter" if key in parameters else "buffer") for key, t in state.items()
    ]
    assert body["elements"] == sum(t.numel() for t in state.values())
    assert body["type"] == cfg["type"] and body["dtype"] == dtype
    assert {k: body["arguments"][k] for k in cfg if k != "type"} == {k: v for k, v in cfg.items() if k != "type"}
    for e in body["state_dict"]:  # every value torch drew or filled lies within what default_init expects
        expected = e["default_init"]["expected"]
        low, high = (-math.inf if expected["low"] is None else expected["low"]), (math.inf if expected["high"] is None else expected["high"])
        slack = 1e-2 * max(abs(low), abs(high), 1.0) if dtype == "bfloat16" and math.isfinite(low + high) else 1e-6
        values = state[e["key"]].double()
        assert low - slack <= values.min().item() and values.max().item() <= high + slack, e["key"]


def test_layer_catalog_dtypes_are_the_ones_a_layer_query_accepts(http):
    dtypes = http.get("/v1/layers").json()["dtypes"]
    for dtype in dtypes:
        r = http.get("/v1/layers", params={"type": "Linear", "in_features": "2", "out_features": "2", "dtype": dtype})
        assert r.status_code == 200 and r.json()["state_dict"][0]["dtype"] == dtype
    bad = http.get("/v1/layers", params={"type": "Linear", "in_features": "2", "out_features": "2", "dtype": "int8"})
    assert bad.status_code == 422
    [error] = bad.json()["detail"]
    assert error["loc"] == ["query", "dtype"] and all(d in error["msg"] for d in dtypes)


def test_layer_query_without_a_type_or_with_a_repeated_argument_is_422_naming_it(http):
    missing = http.get("/v1/layers", params={"in_features": "3"})
    assert missing.status_code == 422
    [error] = missing.json()["detail"]
    assert error["loc"] == ["query", "type"] and "Linear" in error["msg"]
    repeated = http.get("/v1/layers?type=Linear&in_features=3&in_features=4&out_features=2")
    assert repeated.status_code == 422 and repeated.json()["detail"][0]["loc"] == ["query", "in_features"]


def test_layer_query_over_max_elements_is_413_before_torch_sees_it(http, limited):
    huge = http.get("/v1/layers", params={"type": "Conv3d", "in_channels": str(2**31 - 1), "out_channels": str(2**31 - 1), "kernel_size": str(2**31 - 1)})
    assert huge.status_code == 413 and huge.json()["env_var"] == "INITSVC_MAX_ELEMENTS"
    over = limited.get("/v1/layers", params={"type": "Linear", "in_features": "40", "out_features": "30"})  # 1200 > 1000
    assert over.status_code == 413 and over.json()["value"] == 1200 and over.json()["limit"] == 1000
    assert limited.get("/v1/layers", params={"type": "Linear", "in_features": "40", "out_features": "25"}).status_code == 200


def test_describe_layer_turns_a_torch_refusal_into_a_422_naming_the_type():
    """A layer the schema would refuse, made without validation: torch's own refusal is a RecipeError."""
    mha = LAYER_MODELS["MultiheadAttention"].model_construct(type="MultiheadAttention", embed_dim=10, num_heads=3)
    with pytest.raises(AssertionError):  # torch refuses it
        nn.MultiheadAttention(10, 3, device="meta")
    with pytest.raises(RecipeError) as refused:
        describe_layer(LayerQuery(mha, "float32"), Settings())
    [problem] = refused.value.problems
    assert problem.loc == ("type",) and "torch.nn refused this layer" in problem.msg


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(STACKS))
def test_cuda_stacks_are_bit_identical_to_torch_on_the_gpu(http, name, dtype):
    layers = STACKS[name]
    r = post_module(http, layers, seed=31, dtype=dtype, device="cuda")
    assert r.headers["x-init-device"] == "cuda:0"
    assert_same_state(r, reference_module(layers, 31, dtype, device="cuda"))


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("cfg", [pytest.param(c, id=_case_id(c)) for c in LAYER_CASES])
def test_cuda_each_layer_type_is_bit_identical_to_torch_on_the_gpu(http, cfg):
    layers = [cfg, SMALL_LINEAR]
    assert_same_state(post_module(http, layers, seed=5, device="cuda"), reference_module(layers, 5, device="cuda"))
