"""API keys (INITSVC_API_KEYS) and CORS (INITSVC_CORS_ORIGINS): both off unless configured."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from service.api.middleware.auth import ApiKeyMiddleware, presented_keys
from service.settings import Settings
from tests.conftest import live_server

KEY_1 = "k1-alpha-3f9c2d"
KEY_2 = "k2-beta-77e01a"
TENSOR = {"shape": [4], "init": {"scheme": "normal"}, "seed": 0}
REALM = 'Bearer realm="initsvc"'


@pytest.fixture(scope="module")
def keyed():
    with live_server(api_keys=f"{KEY_1},{KEY_2}") as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _refused(response: httpx.Response, says: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == REALM
    assert response.headers["content-type"] == "application/json"
    assert says in response.json()["detail"]


def test_without_keys_everything_is_open(http):
    assert http.post("/v1/tensor", json=TENSOR).status_code == 200
    assert http.get("/metrics").status_code == 200
    assert "www-authenticate" not in http.get("/v1/schemes").headers


def test_missing_key_is_401_with_www_authenticate(keyed):
    _refused(keyed.post("/v1/tensor", json=TENSOR), "missing API key")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Bearer wrong"}, id="bearer-wrong"),
        pytest.param({"X-API-Key": "wrong"}, id="x-api-key-wrong"),
        pytest.param({"Authorization": f"Bearer {KEY_1}x"}, id="key-with-suffix"),
        pytest.param({"Authorization": f"Bearer {KEY_1[:-1]}"}, id="key-prefix"),
        pytest.param({"Authorization": f"Bearer {KEY_1.upper()}"}, id="key-in-other-case"),
    ],
)
def test_wrong_key_is_401(keyed, headers):
    _refused(keyed.post("/v1/tensor", json=TENSOR, headers=headers), "invalid API key")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": f"Basic {KEY_1}"}, id="basic-scheme"),
        pytest.param({"Authorization": KEY_1}, id="no-scheme"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
        pytest.param({"X-API-Key": ""}, id="empty-x-api-key"),
    ],
)
def test_key_not_sent_as_bearer_or_x_api_key_counts_as_missing(keyed, headers):
    _refused(keyed.post("/v1/tensor", json=TENSOR, headers=headers), "missing API key")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": f"Bearer {KEY_1}"}, id="bearer-first-key"),
        pytest.param({"Authorization": f"bearer {KEY_2}"}, id="bearer-lower-case-second-key"),
        pytest.param({"X-API-Key": KEY_1}, id="x-api-key-first-key"),
        pytest.param({"X-API-Key": KEY_2}, id="x-api-key-second-key"),
        pytest.param({"Authorization": "Bearer wrong", "X-API-Key": KEY_2}, id="one-of-two-right"),
    ],
)
def test_right_key_is_served(keyed, headers):
    response = keyed.post("/v1/tensor", json=TENSOR, headers=headers)
    assert response.status_code == 200, response.text
    assert keyed.get("/v1/tensor", params={"shape": "4", "scheme": "ones"}, headers=headers).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs", "/", "/playground/app.js"])
def test_probes_docs_and_playground_stay_open(keyed, path):
    assert keyed.get(path).status_code == 200


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/metrics"), ("GET", "/v1/schemes"), ("GET", "/v1/devices"), ("GET", "/v1/tensor"),
     ("HEAD", "/v1/tensor"), ("POST", "/v1/tensors"), ("GET", "/healthz/"), ("GET", "/no/such/path")],
)
def test_everything_else_needs_a_key(keyed, method, path):
    response = keyed.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == REALM


def test_metrics_answer_with_a_key(keyed):
    response = keyed.get("/metrics", headers={"X-API-Key": KEY_1})
    assert response.status_code == 200
    assert "initsvc_http_requests_total" in response.text


def test_no_key_is_refused_before_the_body_is_read(keyed):
    # A declared body far over INITSVC_MAX_BODY_BYTES, none of it sent: 401 comes first, at once.
    host, port = keyed.base_url.host, keyed.base_url.port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /v1/tensor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\n\r\n")
        data = b""
        while b"invalid API key" not in data and b"missing API key" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 401"), data
    assert b"missing API key" in data


def test_openapi_lists_401_and_the_two_ways_to_send_a_key(keyed):
    doc = keyed.get("/openapi.json").json()
    operation = doc["paths"]["/v1/tensor"]["post"]
    assert "401" in operation["responses"]
    assert {next(iter(s)) for s in operation["security"]} == {"BearerKey", "ApiKeyHeader"}
    assert doc["components"]["securitySchemes"]["ApiKeyHeader"]["name"] == "X-API-Key"
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert "401" not in doc["paths"]["/healthz"]["get"]["responses"]


def test_keys_never_reach_the_logs(capsys, caplog):
    caplog.set_level(logging.DEBUG)
    settings = Settings(api_keys=f"{KEY_1},{KEY_2}")
    assert KEY_1 not in repr(settings) and KEY_1 not in str(settings.model_dump())
    for log_json in (False, True):
        with live_server(api_keys=f"{KEY_1},{KEY_2}", log_json=log_json) as server:
            with httpx.Client(base_url=server.url) as client:
                client.post("/v1/tensor", json=TENSOR, headers={"Authorization": f"Bearer {KEY_1}"})
                client.post("/v1/tensor", json=TENSOR, headers={"X-API-Key": KEY_2})
                client.post("/v1/tensor", json=TENSOR, headers={"Authorization": f"Bearer {KEY_1}-wrong"})
                client.get("/metrics", headers={"X-API-Key": KEY_2 + "0"})
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert "/v1/tensor" in logged  # the access lines were captured...
    assert KEY_1 not in logged and KEY_2 not in logged  # ...and carry no key, right or wrong


def test_middleware_keeps_digests_not_keys():
    middleware = ApiKeyMiddleware(app=None, api_keys=Settings(api_keys=KEY_1).api_keys)
    assert KEY_1 not in repr(middleware) and KEY_1.encode() not in repr(vars(middleware)).encode()
    assert middleware.accepts([KEY_1.encode()]) and not middleware.accepts([b"k1"])


def test_presented_keys_reads_both_headers():
    headers = [(b"authorization", b"BEARER  abc "), (b"x-api-key", b" def"), (b"authorization", b"Basic zzz")]
    assert presented_keys(headers) == [b"abc", b"def"]


# ---- CORS --------------------------------------------------------------------------------------

ORIGIN = "https://notebook.example"


def _preflight(client: httpx.Client, origin: str = ORIGIN) -> httpx.Response:
    return client.options(
        "/v1/tensor",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, x-api-key"},
    )


def test_cors_is_off_by_default(http):
    response = http.post("/v1/tensor", json=TENSOR, headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in _preflight(http).headers


def test_cors_origins_get_preflight_and_exposed_headers_even_with_keys():
    with live_server(cors_origins=f"{ORIGIN},https://other.example", api_keys=KEY_1) as server:
        with httpx.Client(base_url=server.url) as client:
            preflight = _preflight(client)  # browsers send no key on a preflight
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == ORIGIN
            assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()

            response = client.post("/v1/tensor", json=TENSOR, headers={"Origin": ORIGIN, "X-API-Key": KEY_1})
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == ORIGIN
            exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
            assert exposed >= {"etag", "x-init-seed", "x-init-device", "content-length", "content-disposition",
                               "x-request-id"}

            refused = client.post("/v1/tensor", json=TENSOR, headers={"Origin": ORIGIN})
            assert refused.status_code == 401  # readable by the page: it carries the CORS headers
            assert refused.headers["access-control-allow-origin"] == ORIGIN

            stranger = client.post("/v1/tensor", json=TENSOR, headers={"Origin": "https://evil.example", "X-API-Key": KEY_1})
            assert "access-control-allow-origin" not in stranger.headers
            assert _preflight(client, "https://evil.example").status_code == 400
