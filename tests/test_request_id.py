"""X-Request-ID in and out, and the access line that carries it (text or JSON)."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest

from service.api.middleware.request_log import JsonFormatter, RequestIdFilter, request_id_from
from tests.conftest import live_server

UUID_HEX = re.compile(r"^[0-9a-f]{32}$")
TENSOR = {"shape": [4], "init": {"scheme": "normal"}, "seed": 0}


@pytest.mark.parametrize(
    "supplied",
    [
        pytest.param("abc-123", id="short"),
        pytest.param("trace 7/span:9 (retry #2)", id="printable-with-spaces"),
        pytest.param("x" * 128, id="exactly-128"),
    ],
)
def test_a_valid_request_id_is_echoed(http, supplied):
    response = http.post("/v1/tensor", json=TENSOR, headers={"X-Request-ID": supplied})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == supplied


def test_a_request_without_an_id_gets_a_fresh_uuid4_hex(http):
    first = http.get("/healthz").headers["x-request-id"]
    second = http.get("/healthz").headers["x-request-id"]
    assert UUID_HEX.match(first) and UUID_HEX.match(second) and first != second


@pytest.mark.parametrize(
    "supplied",
    [
        pytest.param("x" * 129, id="over-128"),
        pytest.param("a\tb", id="tab"),
        pytest.param("caf\xe9".encode("latin-1"), id="non-ascii"),
        pytest.param("", id="empty"),
    ],
)
def test_an_invalid_request_id_is_replaced(http, supplied):
    response = http.get("/healthz", headers={"X-Request-ID": supplied})
    echoed = response.headers["x-request-id"]
    assert UUID_HEX.match(echoed), echoed


@pytest.mark.parametrize(
    "method,path,body,status",
    [
        pytest.param("POST", "/v1/tensor", {"shape": [4], "init": {"scheme": "eye"}}, 422, id="422"),
        pytest.param("GET", "/no/such/path", None, 404, id="404"),
        pytest.param("DELETE", "/v1/tensor", None, 405, id="405"),
    ],
)
def test_error_answers_carry_the_id_too(http, method, path, body, status):
    response = http.request(method, path, json=body, headers={"X-Request-ID": "err-42"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == "err-42"


def test_a_body_refused_for_size_carries_the_id():
    with live_server(max_body_bytes=64) as server:
        response = httpx.post(server.url + "/v1/tensor", content=b"x" * 1000, headers={"X-Request-ID": "big-1"})
    assert response.status_code == 413
    assert response.headers["x-request-id"] == "big-1"


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_access_line_parses_and_carries_the_id(capsys):
    with live_server(log_json=True) as server, httpx.Client(base_url=server.url) as client:
        response = client.post("/v1/tensor", json=TENSOR, headers={"X-Request-ID": "json-line-1"})
        generated = client.get("/no/such/path").headers["x-request-id"]
    err = capsys.readouterr().err
    records = _json_lines(err)
    mine = [r for r in records if r.get("request_id") == "json-line-1"]
    assert len(mine) == 1, err
    line = mine[0]
    assert line["logger"] == "initsvc.access" and line["level"] == "INFO"
    assert line["method"] == "POST" and line["path"] == "/v1/tensor" and line["status"] == 200
    assert line["bytes"] == int(response.headers["content-length"])
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "json-line-1" in line["msg"] and line["ts"].endswith("+00:00")
    assert [r["status"] for r in records if r.get("request_id") == generated] == [404]


def test_text_access_line_is_one_line_even_for_a_path_with_cr_lf(capsys):
    with live_server(log_json=False) as server, httpx.Client(base_url=server.url) as client:
        client.get("/v1/tensor", params={"shape": "4", "scheme": "ones"}, headers={"X-Request-ID": "text-1"})
        client.get("/evil%0d%0aFAKE%20200%20line", headers={"X-Request-ID": "text-2"})
    err = capsys.readouterr().err
    first = [line for line in err.splitlines() if "rid=text-1" in line]
    assert len(first) == 1 and "initsvc.access: GET /v1/tensor 200" in first[0], err
    evil = [line for line in err.splitlines() if "FAKE" in line]
    assert evil and all("rid=text-2" in line for line in evil), evil  # escaped: no forged line
    assert "\\r\\n" in evil[0]


def test_a_request_id_with_spaces_or_quotes_is_one_quoted_field_of_the_text_line(capsys):
    forged = 'a" status=500 rid="b'
    with live_server(log_json=False) as server, httpx.Client(base_url=server.url) as client:
        r = client.get("/v1/tensor", params={"shape": "4", "scheme": "ones"}, headers={"X-Request-ID": forged})
        assert r.headers["x-request-id"] == forged  # echoed as sent
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "initsvc.access: GET /v1/tensor" in line]
    assert json.loads(line.split(" rid=", 1)[1]) == forged  # the rest of the line is one JSON string


def test_other_records_written_during_a_request_get_its_id():
    from service.api.middleware import request_log

    token = request_log._REQUEST_ID.set("inner-7")
    try:
        record = logging.makeLogRecord({"name": "initsvc.worker", "msg": "hello %s", "args": ("there",)})
        assert RequestIdFilter().filter(record)
    finally:
        request_log._REQUEST_ID.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "inner-7" and line["msg"] == "hello there"


def test_json_formatter_keeps_exceptions_on_one_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        import sys

        record = logging.makeLogRecord({"name": "initsvc", "msg": "failed", "exc_info": sys.exc_info()})
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert "ValueError: bad" in json.loads(text)["exc_info"]


def test_request_id_rule():
    assert request_id_from(b"ok-1") == "ok-1"
    assert UUID_HEX.match(request_id_from(None))
    assert UUID_HEX.match(request_id_from(b"\x00bad"))
    assert UUID_HEX.match(request_id_from(b"\xff"))
