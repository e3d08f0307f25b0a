"""A catalog of bad requests sent as raw bytes: each is a specific 4xx whose JSON names what was
wrong, and the server answers /healthz afterwards.

Every case is one HTTP/1.1 request written to a socket (so nothing is normalized on the way:
bad literals, control characters, lying Content-Length, unterminated chunked bodies), read back
until the server closes the connection.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import live_server
from tests.raw_http import read_response

MAX_BODY_BYTES = 64 * 1024
MAX_TENSORS = 8
TIMEOUT_S = 30


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Case:
    method: str
    path: str
    body: bytes | None = None
    status: int = 422  # the one right status
    loc: tuple = ()  # the end of some error's loc: every 422 names its field
    says: str = ""  # a substring of the message (case-insensitive)
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    raw: bytes | None = None  # the whole request, as is


def _read_answer(sock: socket.socket) -> Answer:
    status, headers, body, _ = read_response(sock)
    return Answer(status, headers, body)


def send(url: str, case: Case) -> Answer:
    parts = urlsplit(url)
    if case.raw is not None:
        request = case.raw
    else:
        lines = [f"{case.method} {case.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in case.headers.items()]
        if case.body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k in case.headers):
            lines.append(f"Content-Length: {len(case.body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (case.body or b"")
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413) and closed before taking all of it
        return _read_answer(sock)


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def tensor(**fields) -> bytes:
    """A /v1/tensor body that is fine but for ``fields``."""
    return j({"shape": [2, 3], "init": {"scheme": "normal"}, "device": "cpu", "seed": 0, **fields})


def literal(template: str, value: str) -> bytes:
    return template.replace("@", value).encode()


def post(body: bytes, path: str = "/v1/tensor", **kw) -> Case:
    return Case("POST", path, body, **kw)


def get(path: str, **kw) -> Case:
    return Case("GET", path, None, headers={}, **kw)


# ---- the catalog -------------------------------------------------------------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]

# (template with @ for the literal, loc, what the message says)
NUMERIC_FIELDS = [
    ('{"shape":[2],"init":{"scheme":"ones"},"seed":@}', ("body", "seed"), "valid integer"),
    ('{"shape":[2],"init":{"scheme":"ones"},"histogram_bins":@}', ("body", "histogram_bins"), "valid integer"),
    ('{"shape":[@],"init":{"scheme":"ones"}}', ("body", "shape", 0), "valid integer"),
    ('{"shape":[2],"init":{"scheme":"uniform","a":@}}', ("init", "uniform", "a"), "finite number"),
    ('{"shape":[2],"init":{"scheme":"uniform","b":@}}', ("init", "uniform", "b"), "finite number"),
    ('{"shape":[2],"init":{"scheme":"normal","mean":@}}', ("init", "normal", "mean"), "finite number"),
    ('{"shape":[2],"init":{"scheme":"normal","std":@}}', ("init", "normal", "std"), "finite number"),
    ('{"shape":[2],"init":{"scheme":"trunc_normal","a":@}}', ("init", "trunc_normal", "a"), "finite number"),
    ('{"shape":[2],"init":{"scheme":"constant","val":@}}', ("init", "constant", "val"), "finite number"),
    ('{"shape":[2,2],"init":{"scheme":"kaiming_uniform","a":@}}', ("init", "kaiming_uniform", "a"), "finite number"),
    ('{"shape":[2,2],"init":{"scheme":"xavier_uniform","gain":@}}', ("init", "xavier_uniform", "gain"), "finite number"),
    ('{"shape":[2,2],"init":{"scheme":"orthogonal","gain":{"nonlinearity":"leaky_relu","param":@}}}',
     ("init", "orthogonal", "gain"), "finite number"),
    ('{"shape":[2,2],"init":{"scheme":"sparse","sparsity":@}}', ("init", "sparse", "sparsity"), "finite number"),
    ('{"shape":[2,2],"init":{"scheme":"variance_scaling","scale":@}}', ("init", "variance_scaling", "scale"), "finite number"),
    ('{"shape":[2],"init":{"scheme":"trunc_normal_tf","b":@}}', ("init", "trunc_normal_tf", "b"), "finite number"),
    ('{"shape":[2,2,1],"init":{"scheme":"dirac","groups":@}}', ("init", "dirac", "groups"), "valid integer"),
    ('{"seed":@,"tensors":[{"name":"w","shape":[2],"init":{"scheme":"ones"}}]}', ("body", "seed"), "valid integer"),
    ('{"tensors":[{"name":"w","shape":[2],"init":{"scheme":"normal","std":@}}]}', ("tensors", 0, "init", "normal", "std"),
     "finite number"),
]


def _non_finite_cases():
    for i, (template, loc, says) in enumerate(NUMERIC_FIELDS):
        path = "/v1/tensors" if '"tensors"' in template else "/v1/tensor"
        # Every literal for the top-level fields; two per scheme parameter, rotating, to keep it short.
        literals = NON_FINITE if i < 3 else [NON_FINITE[i % 4], NON_FINITE[(i + 2) % 4]]
        for lit in literals:
            name = "-".join(str(part) for part in loc if part not in ("body", "init")) or "body"
            name = name if path == "/v1/tensor" or name.startswith("tensors") else f"tensors-{name}"
            yield pytest.param(post(literal(template, lit), path, loc=loc, says=says), id=f"{lit}-in-{name}")


CASES = [
    # -- malformed and truncated JSON
    pytest.param(post(b'{"shape": [2], "init":', loc=("body", 22), says="JSON decode error"), id="truncated-json"),
    # (a JSON decode error's loc is ["body", offset of the first bad character])
    pytest.param(post(b'{"shape": [2,], "init": {"scheme": "ones"}}', loc=("body", 13), says="JSON decode error"),
                 id="trailing-comma"),
    pytest.param(post(b"{'shape': [2]}", loc=("body", 1), says="JSON decode error"), id="single-quotes"),
    pytest.param(post(b'{"shape": [2]} {"x": 1}', loc=("body", 15), says="JSON decode error"), id="two-documents"),
    pytest.param(post(b'{"shape": [2], /* c */ "init": {"scheme": "ones"}}', loc=("body", 15), says="JSON decode error"),
                 id="comment"),
    pytest.param(post(b"<tensor shape='2'/>", loc=("body", 0), says="JSON decode error"), id="xml-as-json"),
    pytest.param(post(b"", loc=("body",), says="Field required"), id="empty-body"),
    pytest.param(post(b"null", loc=("body",), says="valid dictionary"), id="null-body"),
    pytest.param(post(b"[]", loc=("body",), says="valid dictionary"), id="array-body"),
    pytest.param(post(b'"shape"', loc=("body",), says="valid dictionary"), id="string-body"),
    pytest.param(post(b'{"shape": [2], "init": {"scheme": "ones"}, "name": "\xff"}', loc=("body", 52), says="not valid UTF-8"),
                 id="invalid-utf8"),
    pytest.param(post(b'{"shape":[2],"init":{"scheme":"ones"},"seed":' + b"9" * 5000 + b"}", loc=("body",),
                      says="digits"), id="integer-literal-5000-digits"),
    # -- NaN / Infinity / 1e999 in every numeric field
    *_non_finite_cases(),
    # -- huge, negative, fractional where integers go
    pytest.param(post(tensor(seed=-1), loc=("body", "seed"), says="greater than or equal to 0"), id="seed-negative"),
    pytest.param(post(tensor(seed=2**64), loc=("body", "seed"), says="less than or equal to"), id="seed-2-64"),
    pytest.param(post(tensor(seed=1.5), loc=("body", "seed"), says="valid integer"), id="seed-fractional"),
    pytest.param(post(tensor(seed=1.0), loc=("body", "seed"), says="valid integer"), id="seed-integral-float"),
    pytest.param(post(tensor(histogram_bins=-1), loc=("body", "histogram_bins"), says="greater than or equal to 0"),
                 id="bins-negative"),
    pytest.param(post(tensor(histogram_bins=1025), loc=("body", "histogram_bins"), says="1024"), id="bins-over-1024"),
    pytest.param(post(tensor(histogram_bins=2.5), loc=("body", "histogram_bins"), says="valid integer"), id="bins-fractional"),
    pytest.param(post(tensor(shape=[-3]), loc=("body", "shape", 0), says="greater than or equal to 0"), id="shape-negative"),
    pytest.param(post(tensor(shape=[2.5]), loc=("body", "shape", 0), says="valid integer"), id="shape-fractional"),
    pytest.param(post(tensor(shape=[1] * 17), loc=("shape",), says="INITSVC_MAX_DIMS"), id="shape-17-dims"),
    pytest.param(post(tensor(shape=[1] * 65), loc=("body", "shape"), says="at most 64"), id="shape-65-dims"),
    pytest.param(post(j({"shape": [2, 2, 1], "init": {"scheme": "dirac", "groups": 0}}), loc=("dirac", "groups"),
                      says="greater than or equal to 1"), id="dirac-groups-0"),
    pytest.param(post(j({"shape": [2, 2, 1], "init": {"scheme": "dirac", "groups": 1.5}}), loc=("dirac", "groups"),
                      says="valid integer"), id="dirac-groups-fractional"),
    pytest.param(post(tensor(shape=[4], slice=[[0, 2**70]]), loc=("body", "slice", 0), says="start <= stop"),
                 id="slice-stop-2-70"),
    pytest.param(post(tensor(shape=[4], slice=[[0.5, 2]]), loc=("slice", 0, 0), says="valid integer"),
                 id="slice-fractional"),
    pytest.param(post(j({"tensors": [{"name": f"t{i}", "shape": [1], "init": {"scheme": "ones"}} for i in range(MAX_TENSORS + 1)]}),
                      "/v1/tensors", status=413, says="INITSVC_MAX_TENSORS"), id="tensors-over-limit"),
    # -- a above the default b (b not sent)
    pytest.param(post(j({"shape": [2], "init": {"scheme": "uniform", "a": 2.0}}), loc=("body", "init", "uniform", "b"),
                      says="b must be"), id="uniform-a-over-default-b"),
    pytest.param(post(j({"shape": [2], "init": {"scheme": "trunc_normal", "a": 5.0}}),
                      loc=("body", "init", "trunc_normal", "b"), says="b must be"), id="trunc-normal-a-over-default-b"),
    pytest.param(post(j({"shape": [2], "init": {"scheme": "trunc_normal_tf", "a": 3.0}}),
                      loc=("body", "init", "trunc_normal_tf", "b"), says="b must be"), id="trunc-normal-tf-a-over-default-b"),
    pytest.param(get("/v1/tensor?shape=2&scheme=uniform&a=2", loc=("query", "b"), says="b must be"),
                 id="query-uniform-a-over-default-b"),
    # -- element counts that overflow int64
    pytest.param(post(tensor(shape=[2**32, 2**32]), status=413, says="INITSVC_MAX_ELEMENTS"), id="numel-2-64"),
    pytest.param(post(tensor(shape=[2**63, 2**63]), status=413, says="INITSVC_MAX_ELEMENTS"), id="numel-2-126"),
    pytest.param(post(tensor(shape=[2**64 + 1]), status=413, says="INITSVC_MAX_ELEMENTS"), id="dim-over-uint64"),
    pytest.param(post(j({"tensors": [{"name": "w", "shape": [2**40, 2**40], "init": {"scheme": "ones"}}]}), "/v1/tensors",
                      status=413, says="INITSVC_MAX_ELEMENTS"), id="tensors-numel-2-80"),
    # An empty shape's other dimensions still bound its strides: over INITSVC_MAX_ELEMENTS, a 413.
    pytest.param(post(tensor(shape=[2**70, 0]), status=413, says=f"is empty but its other dimensions multiply to {2**70}"),
                 id="zero-dim-beside-2-70"),
    pytest.param(post(j({"tensors": [{"name": "w", "shape": [0, 2**64], "init": {"scheme": "zeros"}}]}), "/v1/tensors",
                      status=413, says=f"is empty but its other dimensions multiply to {2**64}"),
                 id="tensors-zero-dim-beside-2-64"),
    pytest.param(post(tensor(shape=[0, 2**40, 2**40]), status=413, says=f"is empty but its other dimensions multiply to {2**80}"),
                 id="zero-dim-beside-product-2-80"),
    pytest.param(get("/v1/tensor?shape=0,69750099385,7,69297229017562,4,7695,59158&scheme=lecun_uniform", status=413,
                     says="is empty but its other dimensions multiply to 61608528818525858365472741776911600"),
                 id="query-zero-dim-beside-product-over-int64"),
    # -- numbers whose square overflows a float inside calculate_gain
    pytest.param(get("/v1/gain?nonlinearity=leaky_relu&param=1e200", loc=("param",)), id="gain-param-1e200"),
    pytest.param(post(j({"shape": [2, 2], "init": {"scheme": "kaiming_uniform", "a": 1e200}}), loc=("a",)),
                 id="kaiming-a-1e200"),
    pytest.param(get("/v1/tensor?shape=2,2&scheme=kaiming_normal&a=-1e200", loc=("a",)), id="query-kaiming-a-1e200"),
    pytest.param(post(j({"shape": [2, 2], "init": {"scheme": "xavier_uniform",
                                                   "gain": {"nonlinearity": "leaky_relu", "param": 1e200}}}),
                      loc=("gain",)), id="xavier-gain-param-1e200"),
    # -- wrong types
    pytest.param(post(tensor(shape="2,3"), loc=("body", "shape"), says="valid list"), id="shape-string"),
    pytest.param(post(tensor(shape={"0": 2}), loc=("body", "shape"), says="valid list"), id="shape-object"),
    pytest.param(post(tensor(shape=[[2]]), loc=("body", "shape", 0), says="valid integer"), id="shape-nested-list"),
    pytest.param(post(tensor(init="normal"), loc=("body", "init"), says="valid dictionary"), id="init-string"),
    pytest.param(post(tensor(init=[]), loc=("body", "init"), says="valid dictionary"), id="init-array"),
    pytest.param(post(tensor(init={"scheme": 5}), loc=("body", "init", "scheme"), says="scheme must be a string"), id="scheme-number"),
    pytest.param(post(tensor(seed={"a": 1}), loc=("body", "seed"), says="valid integer"), id="seed-object"),
    pytest.param(post(tensor(seed="5"), loc=("body", "seed"), says="valid integer"), id="seed-string"),
    pytest.param(post(tensor(seed=True), loc=("body", "seed"), says="valid integer"), id="seed-boolean"),
    pytest.param(post(tensor(stats="true"), loc=("body", "stats"), says="valid boolean"), id="stats-string"),
    pytest.param(post(tensor(stats=1), loc=("body", "stats"), says="valid boolean"), id="stats-number"),
    pytest.param(post(tensor(name=5), loc=("body", "name"), says="valid string"), id="name-number"),
    pytest.param(post(tensor(dtype=32), loc=("body", "dtype"), says="float32"), id="dtype-number"),
    pytest.param(post(tensor(device=["cpu"]), loc=("body", "device"), says="valid string"), id="device-array"),
    pytest.param(post(tensor(init={"scheme": "normal", "std": True}), loc=("normal", "std"), says="valid number"),
                 id="std-boolean"),
    pytest.param(post(j({"tensors": {}}), "/v1/tensors", loc=("body", "tensors"), says="valid list"), id="tensors-object"),
    pytest.param(post(j({"tensors": [5]}), "/v1/tensors", loc=("body", "tensors", 0), says="valid dictionary"),
                 id="tensors-entry-number"),
    # -- deep nesting: the parser's RecursionError is a 422 json_invalid, not a 500
    pytest.param(post(b"[" * 10_000 + b"]" * 10_000, loc=("body",), says="nested too deeply"), id="10k-nested-arrays"),
    pytest.param(post(b'{"shape":' + b"[" * 10_000 + b"]" * 10_000 + b',"init":{"scheme":"ones"}}', loc=("body",),
                      says="nested too deeply"), id="10k-nested-arrays-in-shape"),
    pytest.param(post(b'{"shape":[2],"init":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}", loc=("body",),
                      says="nested too deeply"), id="10k-nested-objects-in-init"),
    pytest.param(post(b'{"shape":' + b"[" * 500 + b"2" + b"]" * 500 + b',"init":{"scheme":"ones"}}',
                      loc=("body", "shape", 0), says="valid integer"), id="500-nested-arrays-in-shape"),
    # -- wrong and missing content types
    pytest.param(post(tensor(), headers={"Content-Type": "text/plain"}, status=415, says="got 'text/plain'"),
                 id="text-plain"),
    pytest.param(post(tensor(), headers={}, status=415, says="Content-Type: application/json; got 'none'"),
                 id="no-content-type"),
    pytest.param(post(b"shape=2&scheme=ones", headers={"Content-Type": "application/x-www-form-urlencoded"},
                      status=415, says="got 'application/x-www-form-urlencoded'"), id="form-urlencoded"),
    pytest.param(post(tensor(), headers={"Content-Type": "multipart/form-data; boundary=x"}, status=415,
                      says="got 'multipart/form-data; boundary=x'"),
                 id="multipart"),
    # -- header injection through names (a name becomes Content-Disposition's filename)
    pytest.param(post(tensor(name="a\r\nX-Evil: 1"), loc=("body", "name"), says="printable"), id="name-crlf"),
    pytest.param(post(tensor(name="a\nX-Evil: 1"), loc=("body", "name"), says="printable"), id="name-lf"),
    pytest.param(post(tensor(name="a\x00b"), loc=("body", "name"), says="printable"), id="name-nul"),
    pytest.param(post(tensor(name="\x7f"), loc=("body", "name"), says="printable"), id="name-del"),
    pytest.param(post(tensor(name="__metadata__"), loc=("body", "name"), says="__metadata__"), id="name-metadata"),
    pytest.param(post(tensor(name=""), loc=("body", "name"), says="at least 1"), id="name-empty"),
    pytest.param(post(tensor(name="x" * 257), loc=("body", "name"), says="at most 256"), id="name-257-chars"),
    pytest.param(post(j({"tensors": [{"name": "w\r\nX-Evil: 1", "shape": [2], "init": {"scheme": "ones"}}]}),
                      "/v1/tensors", loc=("tensors", 0, "name"), says="printable"), id="tensors-name-crlf"),
    pytest.param(get("/v1/tensor?shape=2&scheme=ones&name=a%0d%0aX-Evil:%201", loc=("query", "name"), says="printable"),
                 id="query-name-crlf"),
    # -- oversize bodies: refused before they are read whole
    pytest.param(Case("POST", "/v1/tensor", raw=b"POST /v1/tensor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 10000000\r\n\r\n", status=413, says="INITSVC_MAX_BODY_BYTES"),
                 id="declared-10mb-nothing-sent"),
    pytest.param(Case("POST", "/v1/tensor", raw=b"POST /v1/tensor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"4000\r\n" + b" " * 0x4000 + b"\r\n") * 6,
                      status=413, says="INITSVC_MAX_BODY_BYTES"), id="chunked-over-limit-unterminated"),
    pytest.param(Case("POST", "/v1/tensor", raw=b"POST /v1/tensor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      + (b"400\r\n" + b" " * 0x400 + b"\r\n") * 80 + b"0\r\n\r\n", status=413, says="INITSVC_MAX_BODY_BYTES"),
                 id="chunked-over-limit-small-chunks"),
    pytest.param(post(b" " * (MAX_BODY_BYTES + 1) + tensor(), status=413, says="INITSVC_MAX_BODY_BYTES"),
                 id="whitespace-padded-over-limit"),
    pytest.param(post(j({"tensors": [{"name": "t" * 200 + str(i), "shape": [1], "init": {"scheme": "ones"}}
                                     for i in range(400)]}), "/v1/tensors", status=413, says="INITSVC_MAX_BODY_BYTES"),
                 id="tensors-body-over-limit"),
    # -- GET query abuse
    pytest.param(get("/v1/tensor?shape=2&shape=3&scheme=ones", loc=("query", "shape"), says="more than once"),
                 id="query-shape-twice"),
    pytest.param(get("/v1/tensor?shape=2&scheme=ones&seed=1&seed=2", loc=("query", "seed"), says="more than once"),
                 id="query-seed-twice"),
    pytest.param(get("/v1/tensor?shape=2&scheme=ones&foo=1", loc=("query", "foo"), says="unknown query parameter"),
                 id="query-unknown"),
    pytest.param(get("/v1/tensor?shape=&scheme=xavier_uniform", loc=("query", "shape"), says="2-D"),
                 id="query-empty-shape-for-2d-scheme"),
    pytest.param(get("/v1/tensor?shape=,&scheme=ones", loc=("query", "shape"), says="comma-separated"),
                 id="query-shape-comma"),
    pytest.param(get("/v1/tensor?shape=a,b&scheme=ones", loc=("query", "shape"), says="comma-separated"),
                 id="query-shape-words"),
    pytest.param(get("/v1/tensor?shape=-1&scheme=ones", loc=("query", "shape"), says="non-negative"),
                 id="query-shape-negative"),
    pytest.param(get("/v1/tensor?shape=1.5&scheme=ones", loc=("query", "shape"), says="integers"),
                 id="query-shape-fractional"),
    pytest.param(get("/v1/tensor?shape=9223372036854775808,2&scheme=ones", status=413, says="INITSVC_MAX_ELEMENTS"),
                 id="query-shape-over-int64"),
    pytest.param(get("/v1/tensor?shape=99999999999999999999999,0&scheme=ones", status=413,
                     says="is empty but its other dimensions multiply to 99999999999999999999999"),
                 id="query-zero-dim-beside-huge"),
    pytest.param(get("/v1/tensor?shape=2&scheme=ones&seed=", loc=("query", "seed"), says="valid integer"),
                 id="query-seed-empty"),
    pytest.param(get("/v1/tensor?shape=2&scheme=ones&seed=-5", loc=("query", "seed"), says="greater than or equal to 0"),
                 id="query-seed-negative"),
    pytest.param(get("/v1/tensor?shape=2&scheme=ones&seed=18446744073709551616", loc=("query", "seed"),
                     says="less than or equal to"), id="query-seed-2-64"),
    pytest.param(get("/v1/tensor?shape=2&scheme=normal&std=nan", loc=("query", "std"), says="finite number"),
                 id="query-std-nan"),
    pytest.param(get("/v1/tensor?shape=2&scheme=normal&std=inf", loc=("query", "std"), says="finite number"),
                 id="query-std-inf"),
    pytest.param(get("/v1/tensor?shape=2&scheme=normal&std=1e999", loc=("query", "std"), says="finite number"),
                 id="query-std-1e999"),
    pytest.param(get("/v1/tensor?shape=2", loc=("query", "scheme"), says="scheme is required"), id="query-no-scheme"),
    pytest.param(get("/v1/tensor?shape=2&scheme=he_normal", loc=("query", "scheme"), says="kaiming_normal"),
                 id="query-unknown-scheme"),
    pytest.param(get("/v1/tensor", loc=("query", "scheme"), says="required"), id="query-nothing"),
    pytest.param(get("/v1/tensor?shape=2,2&scheme=xavier_uniform&gain=1&gain_nonlinearity=relu", loc=("query", "gain"),
                     says="not both"), id="query-gain-twice-over"),
    pytest.param(get("/v1/tensor?shape=2,2&scheme=xavier_uniform&gain_nonlinearity=swish", loc=("query", "gain"),
                     says="nonlinearity"), id="query-gain-unknown-nonlinearity"),
    pytest.param(get("/v1/tensor?shape=2&scheme=ones&histogram_bins=99999", loc=("query", "histogram_bins"),
                     says="1024"), id="query-bins-huge"),
    pytest.param(get("/v1/tensor?shape=4&scheme=ones&slice=0:99", loc=("query", "slice", 0), says="start <= stop"),
                 id="query-slice-past-end"),
    pytest.param(get("/v1/tensor?shape=4&scheme=ones&slice=a:b", loc=("query", "slice", 0), says="start:stop"),
                 id="query-slice-words"),
    pytest.param(get("/v1/tensor?shape=4&scheme=ones&stats=maybe", loc=("query", "stats"), says="valid boolean"),
                 id="query-stats-word"),
    pytest.param(get("/v1/gain?nonlinearity=relu&param=inf", loc=("query", "param"), says="finite number"),
                 id="gain-param-inf"),
    pytest.param(get("/v1/gain", loc=("query", "nonlinearity"), says="Field required"), id="gain-missing"),
    pytest.param(get("/v1/fans?shape=3", loc=("shape",), says="2 to"), id="fans-1d"),
    pytest.param(get("/v1/fans?shape=x,y", loc=("query", "shape"), says="comma-separated"), id="fans-words"),
    # -- wrong method, wrong path, conditional
    pytest.param(Case("DELETE", "/v1/tensor", status=405, says="Method Not Allowed", headers={}), id="delete-tensor"),
    pytest.param(Case("PUT", "/v1/tensors", tensor(), status=405, says="Method Not Allowed"), id="put-tensors"),
    pytest.param(get("/v1/nope", status=404, says="Not Found"), id="unknown-path"),
    pytest.param(post(tensor(), status=412, says="If-None-Match",
                      headers={"Content-Type": "application/json", "If-None-Match": "*"}), id="post-if-none-match-star"),
]


@pytest.fixture(scope="module")
def server():
    with live_server(max_body_bytes=MAX_BODY_BYTES, max_tensors=MAX_TENSORS) as s:
        yield s


@pytest.fixture(autouse=True)
def still_healthy(server):
    yield
    response = httpx.get(server.url + "/healthz", timeout=TIMEOUT_S)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def _messages(detail) -> list[str]:
    if isinstance(detail, str):
        return [detail]
    return [str(e.get("msg", "")) for e in detail]


def _ends_with(loc: list, suffix: tuple) -> bool:
    return len(loc) >= len(suffix) and tuple(loc[len(loc) - len(suffix):]) == suffix


def test_every_422_in_the_catalog_names_its_field_and_every_case_says_why():
    cases = [p.values[0] for p in CASES]
    assert [c for c in cases if c.status == 422 and not c.loc] == []
    assert [c for c in cases if not c.says and not c.loc] == []
    assert len({p.id for p in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_specific_4xx_naming_the_problem(server, case):
    answer = send(server.url, case)
    if answer.status >= 500:
        # uvicorn logs the 500's traceback after sending it. CPython 3.11 formats tracebacks with
        # ast.parse, whose recursion bookkeeping is interpreter-wide: formatting this test's failure
        # at the same moment can raise "SystemError: AST constructor recursion depth mismatch".
        time.sleep(1.0)
    assert answer.status == case.status, (answer.status, answer.body[:500])
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    assert "x-evil" not in answer.headers
    detail = answer.json()["detail"]
    if case.loc:
        assert isinstance(detail, list), detail
        assert any(_ends_with(e["loc"], case.loc) for e in detail), detail
    if case.says:
        assert any(case.says.lower() in m.lower() for m in _messages(detail)), detail
    if answer.status == 413:
        # A 413 names its limit: the INITSVC_ variable is in the detail (and in env_var when given).
        assert isinstance(detail, str) and "INITSVC_" in detail, detail
        env_var = answer.json().get("env_var")
        assert env_var is None or env_var in detail, answer.json()
