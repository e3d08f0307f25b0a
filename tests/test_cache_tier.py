"""The cache tier (``deploy/nginx/initsvc-cache.conf``) in front of a live service: Debian's nginx
on loopback, run as the current user with the repository's conf filled in for free ports and a
scratch cache folder. What the service marks immutable is served again from the cache, bit for
bit; ``no-store``, ``no-cache``, errors and POSTs are not."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from safetensors.torch import load

from bench._nginx import NGINX, start_nginx, stop_nginx
from tests.conftest import LiveServer, live_server
from tests.torch_reference import as_bytes, reference

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (CI installs Debian's nginx-light with .ci/nginx-setup)"
)

def _stop(process: subprocess.Popen, prefix: Path) -> None:
    errors = stop_nginx(process, prefix)
    assert not errors, errors


@pytest.fixture(scope="module")
def cached(server: LiveServer, tmp_path_factory) -> Iterator[httpx.Client]:
    """A client of nginx, which forwards to the session's live service."""
    prefix = tmp_path_factory.mktemp("nginx")
    process, port = start_nginx(prefix, f"127.0.0.1:{server.port}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            yield client
    finally:
        _stop(process, prefix)


def _only_tensor(body: bytes):
    (tensor,) = load(body).values()
    return tensor


def test_seeded_url_is_a_hit_the_second_time(cached):
    url = "/v1/tensor?shape=256,784&scheme=kaiming_uniform&seed=11&device=cpu"
    first = cached.get(url)
    second = cached.get(url)
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert as_bytes(_only_tensor(second.content)) == as_bytes(reference((256, 784), "kaiming_uniform", seed=11))


def test_seeded_model_url_is_a_hit_the_second_time(cached):
    url = "/v1/model/nanogpt/GPT?seed=3&n_layer=1&n_head=2&n_embd=16&block_size=8&vocab_size=32"
    first = cached.get(url)
    second = cached.get(url)
    assert first.status_code == 200, first.text
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("MISS", "HIT")
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert second.content == first.content and load(second.content)


def test_conditional_get_with_the_etag_is_304(cached):
    url = "/v1/tensor?shape=64,32&scheme=normal&seed=12&device=cpu"
    etag = cached.get(url).headers["etag"]
    assert cached.get(url).headers["x-cache-status"] == "HIT"
    again = cached.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = cached.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.headers["x-cache-status"] == "HIT"


def test_unseeded_get_is_never_cached(cached):
    url = "/v1/tensor?shape=8,8&scheme=uniform&device=cpu"
    answers = [cached.get(url) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-cache-status"] in ("MISS", "BYPASS")
    seeds = [answer.headers["x-init-seed"] for answer in answers]
    assert seeds[0] != seeds[1]
    assert answers[0].content != answers[1].content


def test_device_auto_is_not_stored(cached):
    """`no-cache`: the device behind "auto" may change after a redeploy."""
    url = "/v1/tensor?shape=8,8&scheme=uniform&seed=13"
    answers = [cached.get(url) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-cache"
        assert answer.headers["x-cache-status"] == "MISS"
    assert answers[0].content == answers[1].content


def test_post_is_never_cached(cached):
    body = {"shape": [16, 16], "init": {"scheme": "uniform"}, "seed": 14, "device": "cpu"}
    answers = [cached.post("/v1/tensor", json=body) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers.get("x-cache-status", "") != "HIT"
    assert as_bytes(_only_tensor(answers[1].content)) == as_bytes(reference((16, 16), "uniform", seed=14))


def test_errors_are_not_cached(cached):
    url = "/v1/tensor?shape=8,8&scheme=no_such_scheme&seed=15&device=cpu"
    answers = [cached.get(url) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 422
        assert "scheme" in answer.text
        assert answer.headers["x-cache-status"] == "MISS"


def test_head_stays_a_head_upstream(cached):
    url = "/v1/tensor?shape=32,32&scheme=uniform&seed=16&device=cpu"
    head = cached.head(url)
    assert head.status_code == 200
    assert head.headers["x-cache-status"] in ("MISS", "HIT")
    got = cached.get(url)
    assert got.headers["x-cache-status"] == "MISS"  # a HEAD does not fill the GET's entry
    assert int(head.headers["content-length"]) == len(got.content)


def test_json_metadata_and_binary_are_separate_entries(cached):
    url = "/v1/tensor?shape=16,8&scheme=uniform&seed=17&device=cpu"
    binary = cached.get(url)
    meta = cached.get(url, headers={"Accept": "application/json"})
    assert binary.headers["content-type"] == "application/octet-stream"
    assert meta.headers["content-type"].startswith("application/json")
    assert meta.headers["x-cache-status"] == "MISS"
    assert cached.get(url).content == binary.content


def test_request_id_is_the_clients_on_a_hit(cached):
    url = "/v1/tensor?shape=4,4&scheme=uniform&seed=18&device=cpu"
    cached.get(url, headers={"X-Request-ID": "first"})
    hit = cached.get(url, headers={"X-Request-ID": "second"})
    assert hit.headers["x-cache-status"] == "HIT"
    assert hit.headers["x-request-id"] == "second"


def test_other_paths_pass_through(cached):
    health = cached.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert "x-cache-status" not in health.headers
    own = cached.get("/cache-healthz")  # nginx's own, for the cache tier's probes
    assert own.status_code == 200 and own.text == "ok\n"


def test_a_hit_needs_the_credential_the_service_accepted(tmp_path):
    """With API keys on, a cached answer never reaches a request the service would refuse."""
    url = "/v1/tensor?shape=8,8&scheme=uniform&seed=19&device=cpu"
    with live_server(api_keys="key-one,key-two") as guarded:
        process, port = start_nginx(tmp_path, f"127.0.0.1:{guarded.port}")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                one = {"Authorization": "Bearer key-one"}
                assert client.get(url, headers=one).headers["x-cache-status"] == "MISS"
                assert client.get(url, headers=one).headers["x-cache-status"] == "HIT"
                anonymous = client.get(url)
                assert anonymous.status_code == 401 and anonymous.headers["x-cache-status"] == "MISS"
                wrong = client.get(url, headers={"Authorization": "Bearer key-zero"})
                assert wrong.status_code == 401 and wrong.headers["x-cache-status"] == "MISS"
                two = client.get(url, headers={"X-API-Key": "key-two"})
                assert two.status_code == 200 and two.headers["x-cache-status"] == "MISS"
                assert two.content == client.get(url, headers=one).content
        finally:
            _stop(process, tmp_path)
