"""The expected side of every parity test: docs/api.md §3's script, run by torch in the test process.

    torch.manual_seed(seed)
    t = torch.empty(shape, dtype=dtype, device=dev)
    torch.nn.init.<scheme>_(t, **params)

Schemes torch lacks follow docs/api.md §3's definitions, written here from that text with torch
calls only (not imported from the service), so the service is checked against the contract.
"""

from __future__ import annotations

import math
import threading
import warnings

import torch
from torch.nn import init

_GLOBAL_RNG = threading.Lock()  # the reference uses the global generator, as the contract does

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
TORCH_NAMES = {"identity": "linear"}


def _gain(g):
    if isinstance(g, dict):
        return init.calculate_gain(TORCH_NAMES.get(g["nonlinearity"], g["nonlinearity"]), g.get("param"))
    return g


def _trunc_normal_tf(t, mean=0.0, std=1.0, a=-2.0, b=2.0):
    init.trunc_normal_(t, 0.0, 1.0, a, b)
    t.mul_(std).add_(mean)


def _variance_scaling(t, scale=1.0, mode="fan_in", distribution="truncated_normal"):
    if t.numel() == 0:
        return
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(t)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    v = scale / n
    if distribution == "truncated_normal":
        _trunc_normal_tf(t, 0.0, math.sqrt(v) / 0.87962566103423978, -2, 2)
    elif distribution == "normal":
        init.normal_(t, 0.0, math.sqrt(v))
    else:
        b = math.sqrt(3 * v)
        init.uniform_(t, -b, b)


def _apply(t, scheme, p):
    p = dict(p)
    if scheme == "variance_scaling":
        return _variance_scaling(t, **p)
    if scheme == "lecun_uniform":
        return _variance_scaling(t, 1.0, "fan_in", "uniform")
    if scheme == "lecun_normal":
        return _variance_scaling(t, 1.0, "fan_in", "truncated_normal")
    if scheme == "trunc_normal_tf":
        return _trunc_normal_tf(t, **p)
    if "gain" in p:
        p["gain"] = _gain(p["gain"])
    if "nonlinearity" in p:
        p["nonlinearity"] = TORCH_NAMES.get(p["nonlinearity"], p["nonlinearity"])
    getattr(init, scheme + "_")(t, **p)


def reference(shape, scheme, params=None, dtype="float32", seed=0, device="cpu") -> torch.Tensor:
    """``torch.manual_seed(seed)`` then the scheme on ``torch.empty(shape)``; orthogonal in
    float16/bfloat16 is float32's result cast (docs/api.md §3), with 1 intra-op thread for the QR."""
    params = params or {}
    with _GLOBAL_RNG, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(seed)
            if scheme == "orthogonal" and dtype in ("float16", "bfloat16"):
                full = torch.empty(shape, dtype=torch.float32, device=device)
                _apply(full, scheme, params)
                return full.to(DTYPES[dtype]).cpu()
            t = torch.empty(shape, dtype=DTYPES[dtype], device=device)
            _apply(t, scheme, params)
            return t.cpu()
        finally:
            torch.set_num_threads(previous)


def as_bytes(t: torch.Tensor) -> bytes:
    """Bytes, not values: ``torch.equal`` calls 0.0 and -0.0 equal."""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def torch_script(entries, seed, dtype="float32"):
    """docs/api.md §4.4: torch.manual_seed(seed), then each tensor in order; an own seed uses a fresh stream."""
    out = {}
    with _GLOBAL_RNG:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(seed)
            for e in entries:
                t = torch.empty(e["shape"], dtype=DTYPES[e.get("dtype", dtype)])
                params = {k: v for k, v in e["init"].items() if k != "scheme"}
                if "seed" in e:
                    state = torch.get_rng_state()
                    torch.manual_seed(e["seed"])
                    _apply(t, e["init"]["scheme"], params)
                    torch.set_rng_state(state)
                else:
                    _apply(t, e["init"]["scheme"], params)
                out[e["name"]] = t
        finally:
            torch.set_num_threads(previous)
    return out
