"""CUDA parity: the service's tensors on a GPU equal docs/api.md §3's script on that GPU. Skips without one."""

from __future__ import annotations

import pytest
from safetensors.torch import load

from tests.conftest import requires_cuda
from tests.recipes_catalog import parity_cases
from tests.torch_reference import as_bytes, reference

pytestmark = [pytest.mark.cuda, requires_cuda]


@pytest.mark.parametrize("scheme,params,shape,dtype,seed", parity_cases(seeds=[0, 2**32 + 1, 2**64 - 1]))
def test_cuda_tensor_is_bit_identical_to_torch_on_the_gpu(http, scheme, params, shape, dtype, seed):
    body = {"shape": shape, "init": {"scheme": scheme, **params}, "dtype": dtype, "seed": seed, "device": "cuda"}
    r = http.post("/v1/tensor", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-init-device"] == "cuda:0"
    expected = reference(shape, scheme, params, dtype, seed, device="cuda")
    assert as_bytes(load(r.content)["weight"]) == as_bytes(expected)


def test_cuda_provenance_names_the_gpu_and_its_sm_count(http):
    r = http.post("/v1/tensor", json={"shape": [4], "init": {"scheme": "normal"}, "device": "cuda"}, headers={"accept": "application/json"})
    provenance = r.json()["provenance"]
    assert provenance["device_name"] and provenance["sm_count"] > 0
