"""A bug is a JSON 500 with the request id, logged with its traceback, on a connection that stays
open; what torch itself refuses on a recipe is a 422 naming the field (docs/api.md §6).

The bug is forced by swapping a scheme's filler for one that raises, on a server of the test's own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket

import httpx
import pytest

from service.engine import schemes
from tests.conftest import live_server
from tests.raw_http import read_response

BODY = {"shape": [3, 4], "init": {"scheme": "ones"}, "device": "cpu", "seed": 0}


class Boom(Exception):
    """Nothing the service maps: a bug."""


def _raising(exc: BaseException):
    def fill(t, p, s, q):
        raise exc

    return fill


@pytest.fixture
def broken_ones(monkeypatch):
    """``ones`` raises ``Boom``; ``zeros`` raises what torch raises on an index past a dimension."""
    for name, exc in (("ones", Boom("the filler broke")),
                      ("zeros", IndexError("index 0 is out of bounds for dimension 2 with size 0"))):
        monkeypatch.setitem(schemes.SCHEMES, name, dataclasses.replace(schemes.SCHEMES[name], fill=_raising(exc)))


@pytest.fixture
def server(broken_ones):
    with live_server() as s:
        yield s


def _tracebacks(caplog, request_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR
        and r.exc_info
        and isinstance(r.exc_info[1], Boom)
        and request_id in r.getMessage()
    ]


@pytest.mark.parametrize(
    "method,path,kwargs",
    [
        pytest.param("POST", "/v1/tensor", {"json": BODY}, id="post-tensor"),
        pytest.param(
            "GET",
            "/v1/tensor",
            {"params": {"shape": "3,4", "scheme": "ones", "device": "cpu", "seed": "0"}},
            id="get-tensor",
        ),
        pytest.param(
            "POST",
            "/v1/tensors",
            {"json": {"device": "cpu", "tensors": [{"name": "w", "shape": [3, 4], "init": {"scheme": "ones"}}]}},
            id="post-tensors",
        ),
        pytest.param(
            "POST",
            "/v1/module",
            {
                "json": {
                    "device": "cpu",
                    "layers": [{"type": "Linear", "in_features": 2, "out_features": 3}],
                    "overrides": [{"param": "0.weight", "init": {"scheme": "ones"}}],
                }
            },
            id="module-override",
        ),
    ],
)
def test_unexpected_engine_error_is_json_500_with_request_id_and_traceback(server, caplog, method, path, kwargs):
    caplog.set_level(logging.ERROR, logger="initsvc")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.request(method, path, headers={"X-Request-ID": f"bug-{method}-{path}"}, **kwargs)
        assert r.status_code == 500, r.text[:500]
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-request-id"] == f"bug-{method}-{path}"
        body = r.json()
        assert body["request_id"] == f"bug-{method}-{path}"
        assert "Boom" in body["detail"] and f"bug-{method}-{path}" in body["detail"]
        assert "connection" not in r.headers or r.headers["connection"].lower() != "close"
        # The same client, the same keep-alive connection: the next request is served.
        ok = client.post("/v1/tensor", json={**BODY, "init": {"scheme": "normal"}})
        assert ok.status_code == 200, ok.text[:500]
    records = _tracebacks(caplog, f"bug-{method}-{path}")
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert "the filler broke" in logging.Formatter().formatException(records[0].exc_info)


def test_the_500s_connection_serves_the_next_request_on_the_same_socket(server):
    host, port = server.url.removeprefix("http://").split(":")
    bad = json.dumps(BODY).encode()
    good = json.dumps({**BODY, "init": {"scheme": "normal"}}).encode()

    def request(body: bytes) -> bytes:
        return (
            f"POST /v1/tensor HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request(bad))
        status, headers, body, rest = read_response(sock, b"")
        assert status == 500 and json.loads(body)["request_id"] == headers["x-request-id"]
        assert headers.get("connection", "").lower() != "close"
        sock.sendall(request(good))
        status, _, body, _ = read_response(sock, rest)
        assert status == 200 and "tensors" in json.loads(body)


@pytest.mark.parametrize(
    "method,kwargs,loc",
    [
        pytest.param("POST", {"json": {**BODY, "init": {"scheme": "zeros"}}}, ["body", "shape"], id="post"),
        pytest.param("GET", {"params": {"shape": "3,4", "scheme": "zeros"}}, ["query", "shape"], id="get"),
    ],
)
def test_what_torch_raises_on_a_recipe_is_a_422_naming_the_field(server, method, kwargs, loc):
    r = httpx.request(method, server.url + "/v1/tensor", timeout=60, **kwargs)
    assert r.status_code == 422, r.text[:500]
    detail = r.json()["detail"]
    assert [e["loc"] for e in detail] == [loc], detail
    assert "zeros" in detail[0]["msg"] and "IndexError" in detail[0]["msg"] and "[3, 4]" in detail[0]["msg"]


def test_a_bug_in_a_middleware_is_a_json_500_with_the_request_id(monkeypatch, caplog):
    from service.api.middleware.body_limit import BodyLimitMiddleware

    async def broken(self, scope, receive, send):
        raise Boom("the body limit broke")

    monkeypatch.setattr(BodyLimitMiddleware, "__call__", broken)
    caplog.set_level(logging.ERROR, logger="initsvc")
    with live_server() as s, httpx.Client(base_url=s.url, timeout=60) as client:
        r = client.post("/v1/tensor", json=BODY, headers={"X-Request-ID": "bug-middleware"})
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        assert r.json()["request_id"] == "bug-middleware" == r.headers["x-request-id"]
    assert any(rec.exc_info and isinstance(rec.exc_info[1], Boom) for rec in caplog.records)
