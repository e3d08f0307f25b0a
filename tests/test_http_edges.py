"""HTTP edges the routes never see (docs/api.md §6): a body that stops arriving (408 after
INITSVC_RECEIVE_TIMEOUT_S, the connection closed), a body the JSON parser gives up on (422
json_invalid), a body not sent as JSON (415 naming its Content-Type), one shape and one rendering
for every 413 and 401, a 405's Allow naming every method of the path, and HEAD on the probes.

Requests go over raw sockets where the client must misbehave (a short body, a stalled chunk)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from service.codec.header import decode_header
from tests.conftest import live_server
from tests.raw_http import read_response
from tests.torch_reference import as_bytes, reference

KEY = "edge-key-5b1e"
RECEIVE_TIMEOUT_S = 0.5
MAX_BODY_BYTES = 64 * 1024
MAX_ELEMENTS = 1 << 23
WAIT_S = 30  # how long a test waits for an answer that must come (far above RECEIVE_TIMEOUT_S)
# How long to wait for a close after an answer: one that closes does so at once, and uvicorn's
# keep-alive timeout (5 s) would close an idle connection after this.
CLOSE_WAIT_S = 2 * RECEIVE_TIMEOUT_S + 1
TENSOR = {"shape": [3, 5], "init": {"scheme": "normal"}, "seed": 7, "device": "cpu"}


@pytest.fixture(scope="module")
def server():
    with live_server(
        receive_timeout_s=RECEIVE_TIMEOUT_S, max_body_bytes=MAX_BODY_BYTES, max_elements=MAX_ELEMENTS, api_keys=KEY
    ) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=WAIT_S, headers={"X-API-Key": KEY}) as c:
        yield c


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, closed: bool):
        self.status, self.headers, self.body, self.closed = status, headers, body, closed

    def json(self):
        return json.loads(self.body)


def _read_answer(sock: socket.socket) -> Answer:
    """One answer with a Content-Length body, then whether the server closed the connection
    within CLOSE_WAIT_S."""
    status, headers, body, _ = read_response(sock)
    sock.settimeout(CLOSE_WAIT_S)
    try:
        closed = sock.recv(1) == b""
    except TimeoutError:
        closed = False
    finally:
        sock.settimeout(WAIT_S)
    return Answer(status, headers, body, closed)


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)


def head(path: str, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n{extra}\r\n").encode()


# --- 408: a body that stops arriving --------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(head("/v1/tensor", "Content-Length: 100\r\n") + b'{"shape":', id="content-length-short"),
        pytest.param(head("/v1/tensor", "Transfer-Encoding: chunked\r\n") + b"9\r\n{\"shape\":\r\n", id="chunked-stalled"),
        pytest.param(head("/v1/tensor", "Content-Length: 100\r\n"), id="no-byte-of-the-body"),
    ],
)
def test_a_body_that_stops_arriving_is_a_408_naming_the_setting_and_the_connection_closes(server, request_bytes):
    with connect(server) as sock:
        sock.sendall(request_bytes)
        answer = _read_answer(sock)  # the socket's own timeout (WAIT_S) bounds the wait
    assert answer.status == 408, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["env_var"] == "INITSVC_RECEIVE_TIMEOUT_S"
    assert "INITSVC_RECEIVE_TIMEOUT_S" in answer.json()["detail"]
    assert answer.body == compact(answer.json())
    assert answer.headers.get("connection", "").lower() == "close" and answer.closed


def test_a_body_sent_in_pieces_each_within_the_timeout_is_served(server):
    body = json.dumps(TENSOR).encode()
    pieces = [body[i : i + 8] for i in range(0, len(body), 8)][:4]
    pieces.append(body[sum(map(len, pieces)):])
    with connect(server) as sock:
        sock.sendall(head("/v1/tensor", f"Content-Length: {len(body)}\r\nAccept: application/json\r\n"))
        for piece in pieces:  # the whole body takes longer than the timeout, each gap far less
            time.sleep(RECEIVE_TIMEOUT_S / 3)
            sock.sendall(piece)
        answer = _read_answer(sock)
    assert answer.status == 200, answer.body
    assert answer.json()["request"]["shape"] == TENSOR["shape"] and not answer.closed


def test_a_streamed_answer_read_slowly_is_not_cut_by_the_receive_timeout(client):
    # Once the body is in, the answer listens for the client leaving (receive() until
    # http.disconnect) for as long as it streams: that wait has no timeout.
    n = 1 << 22
    recipe = {"shape": [n], "init": {"scheme": "uniform"}, "seed": 3, "device": "cpu", "stats": False}
    with client.stream("POST", "/v1/tensor", json=recipe) as r:
        assert r.status_code == 200
        time.sleep(4 * RECEIVE_TIMEOUT_S)  # the server's writes wait on a full socket meanwhile
        data = b"".join(r.iter_raw())
    assert len(data) == int(r.headers["content-length"])
    _, tensors, start = decode_header(data)
    assert data[start:] == as_bytes(reference([n], "uniform", seed=3))


def test_a_get_without_a_body_is_not_timed_and_keeps_its_connection(server):
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(f"GET /v1/schemes HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\r\n".encode())
            answer = _read_answer(sock)  # waits past the receive timeout for a close that must not come
            assert answer.status == 200 and not answer.closed


# --- 422: a body the JSON parser gives up on ------------------------------------------------------


def test_a_body_that_is_not_utf8_is_a_422_json_invalid_at_its_byte(client):
    body = b'{"name":"\xe9"}'
    r = client.post("/v1/tensor", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"] == ["body", body.index(b"\xe9")]
    assert "not valid UTF-8" in error["msg"] and "0xe9" in error["msg"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 3000 + b"]" * 3000, id="3000-nested-arrays"),
        pytest.param(b'{"shape":[2],"init":' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}", id="3000-nested-objects"),
    ],
)
def test_json_nested_too_deep_is_a_422_json_invalid(client, body):
    r = client.post("/v1/tensor", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{
        "loc": ["body"], "type": "json_invalid",
        "msg": "JSON decode error: arrays and objects are nested too deeply to parse; no request needs more than a few levels",
    }]


def test_a_number_with_too_many_digits_is_a_422_json_invalid(client):
    import sys

    body = b'{"shape":[2],"init":{"scheme":"ones"},"seed":' + b"9" * (sys.get_int_max_str_digits() + 1) + b"}"
    r = client.post("/v1/tensor", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"] == ["body"]
    assert f"more than {sys.get_int_max_str_digits()} digits" in error["msg"]


# --- 415: a body not sent as JSON ---------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/json", "application/jsonx", "application/json-seq", "text/plain", "application/x-json", None]
)
def test_a_body_not_sent_as_json_is_a_415_naming_its_content_type(client, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = client.post("/v1/tensor", content=json.dumps(TENSOR).encode(), headers=headers)
    assert r.status_code == 415, r.text
    assert f"got {content_type or 'none'!r}" in r.json()["detail"]
    assert "application/json" in r.json()["detail"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.initsvc+json"]
)
def test_json_and_any_plus_json_type_with_parameters_is_parsed(client, content_type):
    headers = {"Content-Type": content_type, "Accept": "application/octet-stream"}
    r = client.post("/v1/tensor", content=json.dumps(TENSOR).encode(), headers=headers)
    assert r.status_code == 200, r.text
    _, _, start = decode_header(r.content)
    assert r.content[start:] == as_bytes(reference(TENSOR["shape"], "normal", seed=TENSOR["seed"]))


def test_a_json_body_of_the_wrong_shape_stays_a_422(client):
    r = client.post("/v1/tensor", content=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]


# --- 413 and 401: one shape, one rendering --------------------------------------------------------

LIMIT_KEYS = {"detail", "limit", "value", "env_var"}


def test_a_declared_body_over_the_limit_is_a_413_with_its_value(server):
    declared = MAX_BODY_BYTES + 12345
    with connect(server) as sock:
        sock.sendall(head("/v1/tensor", f"Content-Length: {declared}\r\n"))
        answer = _read_answer(sock)
    assert answer.status == 413
    body = answer.json()
    assert set(body) == LIMIT_KEYS and answer.body == compact(body)
    assert (body["limit"], body["value"], body["env_var"]) == (MAX_BODY_BYTES, declared, "INITSVC_MAX_BODY_BYTES")
    assert "INITSVC_MAX_BODY_BYTES" in body["detail"] and str(declared) in body["detail"]
    assert answer.closed


def test_a_chunked_body_over_the_limit_is_a_413_with_the_bytes_received(server):
    chunk = 0x4000
    chunks = 6  # 96 KiB sent, the limit is 64 KiB
    with connect(server) as sock:
        sock.sendall(head("/v1/tensor", "Transfer-Encoding: chunked\r\n"))
        sock.sendall((f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n") * chunks)
        answer = _read_answer(sock)
    assert answer.status == 413
    body = answer.json()
    assert set(body) == LIMIT_KEYS and answer.body == compact(body)
    assert body["limit"] == MAX_BODY_BYTES and body["env_var"] == "INITSVC_MAX_BODY_BYTES"
    # refused at the first read past the limit: what had arrived, more than the limit, at most all of it
    assert MAX_BODY_BYTES < body["value"] <= chunk * chunks and body["value"] % chunk == 0
    assert str(body["value"]) in body["detail"]


def test_every_413_has_the_same_keys_and_rendering(client):
    over_elements = client.post("/v1/tensor", json={**TENSOR, "shape": [MAX_ELEMENTS + 1]})
    over_body = client.post("/v1/tensor", content=b" " * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
    for r in (over_elements, over_body):
        assert r.status_code == 413, r.text
        assert set(r.json()) == LIMIT_KEYS and r.content == compact(r.json())
    assert over_elements.json()["value"] == MAX_ELEMENTS + 1 and over_elements.json()["env_var"] == "INITSVC_MAX_ELEMENTS"
    assert over_body.json()["value"] == MAX_BODY_BYTES + 1


def test_the_401_is_compact_json_like_every_other_error(server):
    r = httpx.post(server.url + "/v1/tensor", json=TENSOR, timeout=WAIT_S)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="initsvc"'
    assert set(r.json()) == {"detail"} and r.content == compact(r.json())


# --- 405 and HEAD ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/tensor", {"GET", "HEAD", "POST"}),
        ("DELETE", "/v1/tensor", {"GET", "HEAD", "POST"}),
        ("DELETE", "/v1/model/x", {"GET", "HEAD"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("PUT", "/metrics", {"GET", "HEAD"}),
        ("PATCH", "/v1/tensors", {"POST"}),
    ],
)
def test_a_405_allows_every_method_the_path_has(client, method, path, allowed):
    r = client.request(method, path)
    assert r.status_code == 405 and r.content == compact(r.json())
    assert set(m.strip() for m in r.headers["allow"].split(",")) == allowed
    for other in allowed:  # and each of them is served there
        assert client.request(other, path, json=TENSOR if other == "POST" else None).status_code != 405, other


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_on_a_probe_gives_the_get_headers_without_a_body(client, path):
    got, headed = client.get(path), client.head(path)
    assert got.status_code == headed.status_code == 200
    assert headed.content == b"" and int(headed.headers["content-length"]) == len(got.content)
    assert headed.headers["content-type"] == got.headers["content-type"] == "application/json"


def test_head_on_metrics_is_served_without_a_body(client):
    got, headed = client.get("/metrics"), client.head("/metrics")
    assert got.status_code == headed.status_code == 200 and headed.content == b""
    assert headed.headers["content-type"] == got.headers["content-type"]
    assert int(headed.headers["content-length"]) > 0


@pytest.mark.parametrize("path", [
    "/v1/schemes", "/v1/gain?nonlinearity=relu", "/v1/fans?shape=4,4", "/v1/devices", "/v1/models",
    "/v1/layers", "/v1/layers?type=Linear&in_features=2&out_features=3",
])
def test_head_answers_wherever_get_does_with_the_same_headers_and_no_body(client, path):
    get, head = client.get(path), client.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


@pytest.mark.parametrize("path,body", [
    ("/v1/tensor", b'{"shape": [4], "init": {"scheme": "normal"}, "seed": 0, "seed": 5}'),
    ("/v1/tensor", b'{"shape": [4], "init": {"scheme": "uniform", "a": 0.5, "a": 0.7}}'),
    ("/v1/tensors", b'{"tensors": [{"name": "w", "name": "v", "shape": [2], "init": {"scheme": "zeros"}}]}'),
    ("/v1/module", b'{"layers": [{"type": "Linear", "in_features": 2, "out_features": 2, "bias": false, "bias": true}]}'),
    ("/v1/model", b'{"model": "transformers/GPT2LMHeadModel", "config": {"n_layer": 1, "n_layer": 2}}'),
])
def test_a_key_given_twice_in_one_object_is_refused_naming_it(client, path, body):
    """json.loads would keep the last; a strict body (docs/api.md §6) says which key."""
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"] == ["body"]
    key = {b'"seed"': "seed", b'"a"': "a", b'"name"': "name", b'"bias"': "bias", b'"n_layer"': "n_layer"}
    (name,) = [k for token, k in key.items() if body.count(token) == 2]
    assert f"the key {name!r} appears twice in one object" in error["msg"]
