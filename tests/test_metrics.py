"""/metrics: counters move by exactly the traffic sent, gauges are there for every device."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import live_server

TENSOR = "/v1/tensor"


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    """``(sample name, labels) -> value`` for every sample of a text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape(client: httpx.Client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


@pytest.fixture(scope="module")
def fresh():
    with live_server() as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield server, client


def test_counters_move_by_exactly_the_traffic_sent(fresh):
    _, client = fresh
    before = _scrape(client)
    good = [
        {"shape": [16], "init": {"scheme": "normal"}, "seed": 0},
        {"shape": [8, 4], "init": {"scheme": "normal", "std": 0.5}, "seed": 1},
        {"shape": [3, 3], "init": {"scheme": "ones"}, "seed": 2},
    ]
    bad = [
        {"shape": [4], "init": {"scheme": "normal", "std": -1.0}},
        {"shape": [4], "init": {"scheme": "eye"}},
    ]
    lengths = []
    for body in good:
        response = client.post(TENSOR, json=body)
        assert response.status_code == 200, response.text
        lengths.append(int(response.headers["content-length"]))
        assert len(response.content) == lengths[-1]
    for body in bad:
        response = client.post(TENSOR, json=body)
        assert response.status_code == 422, response.text
        lengths.append(int(response.headers["content-length"]))
    response = client.get(TENSOR, params={"shape": "5,5", "scheme": "uniform", "seed": "3"})
    assert response.status_code == 200
    lengths.append(int(response.headers["content-length"]))
    many = client.post(
        "/v1/tensors",
        json={"seed": 0, "tensors": [
            {"name": "w", "shape": [4, 4], "init": {"scheme": "xavier_uniform"}},
            {"name": "b", "shape": [4], "init": {"scheme": "zeros"}},
            {"name": "c", "shape": [4], "init": {"scheme": "normal"}},
        ]},
    )
    assert many.status_code == 200, many.text

    after = _scrape(client)

    def moved(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("initsvc_http_requests_total", method="POST", route=TENSOR, status="200") == 3
    assert moved("initsvc_http_requests_total", method="POST", route=TENSOR, status="422") == 2
    assert moved("initsvc_http_requests_total", method="GET", route=TENSOR, status="200") == 1
    assert moved("initsvc_http_requests_total", method="POST", route="/v1/tensors", status="200") == 1
    assert moved("initsvc_http_response_bytes_total", route=TENSOR) == sum(lengths)
    assert moved("initsvc_http_response_bytes_total", route="/v1/tensors") == int(many.headers["content-length"])
    assert moved("initsvc_http_request_duration_seconds_count", method="POST", route=TENSOR) == 5
    assert moved("initsvc_tensors_generated_total", scheme="normal") == 3  # two /v1/tensor, one in /v1/tensors
    assert moved("initsvc_tensors_generated_total", scheme="ones") == 1
    assert moved("initsvc_tensors_generated_total", scheme="uniform") == 1
    assert moved("initsvc_tensors_generated_total", scheme="xavier_uniform") == 1
    assert moved("initsvc_tensors_generated_total", scheme="zeros") == 1
    assert moved("initsvc_tensors_generated_total", scheme="eye") == 0  # refused before generation


def test_scrape_counts_itself_once_per_scrape(fresh):
    _, client = fresh
    first = _value(_scrape(client), "initsvc_http_requests_total", method="GET", route="/metrics", status="200")
    second = _value(_scrape(client), "initsvc_http_requests_total", method="GET", route="/metrics", status="200")
    assert second == first + 1


def test_unknown_paths_share_one_label_not_one_per_path(fresh):
    _, client = fresh
    before = _scrape(client)
    for i in range(3):
        assert client.get(f"/no/such/path/{i}").status_code == 404
    after = _scrape(client)
    key = ("initsvc_http_requests_total", frozenset({"method": "GET", "route": "<unmatched>", "status": "404"}.items()))
    assert after.get(key, 0) - before.get(key, 0) == 3
    assert not any("/no/such" in dict(labels).get("route", "") for _, labels in after)


def test_wrong_method_is_labelled_with_the_route_template(fresh):
    _, client = fresh
    before = _scrape(client)
    assert client.delete(TENSOR).status_code == 405
    after = _scrape(client)
    labels = {"method": "DELETE", "route": TENSOR, "status": "405"}
    assert _value(after, "initsvc_http_requests_total", **labels) - _value(before, "initsvc_http_requests_total", **labels) == 1


def test_unusual_methods_share_one_label(fresh):
    # Methods the HTTP parser knows but the API does not serve (a made-up token is already a 400
    # from uvicorn's parser and never reaches the app).
    _, client = fresh
    for method in ("PROPFIND", "MKCOL", "PURGE"):
        assert client.request(method, TENSOR).status_code == 405
    after = _scrape(client)
    assert _value(after, "initsvc_http_requests_total", method="OTHER", route=TENSOR, status="405") == 3
    assert not any(dict(labels).get("method", "") in ("PROPFIND", "MKCOL", "PURGE") for _, labels in after)


def test_gauges_are_present_for_every_device(fresh):
    _, client = fresh
    devices = [d["device"] for d in client.get("/v1/devices").json()["devices"]]
    samples = _scrape(client)
    for device in devices:
        for name in ("initsvc_queue_depth", "initsvc_inflight_bytes", "initsvc_inflight_limit_bytes",
                     "initsvc_device_memory_used_bytes", "initsvc_worker_up"):
            assert (name, frozenset({"device": device}.items())) in samples, (name, device)
        assert _value(samples, "initsvc_worker_up", device=device) == 1
        assert _value(samples, "initsvc_queue_depth", device=device) == 0
        assert _value(samples, "initsvc_inflight_bytes", device=device) == 0  # nothing in flight between requests
    assert _value(samples, "initsvc_device_memory_used_bytes", device="cpu") > 10 * 2**20  # torch alone is more


def test_bytes_of_a_streamed_answer_are_counted_chunk_by_chunk():
    # 1 MiB of float32 goes out in several chunks; the counter must hold every byte of them.
    with live_server() as server, httpx.Client(base_url=server.url, timeout=60) as client:
        with client.stream("POST", TENSOR, json={"shape": [512, 512], "init": {"scheme": "uniform"}, "seed": 0}) as r:
            received = sum(len(chunk) for chunk in r.iter_raw())
        assert received == int(r.headers["content-length"]) > 2**20
        samples = _scrape(client)
        assert _value(samples, "initsvc_http_response_bytes_total", route=TENSOR) == received


def test_each_app_has_its_own_registry():
    with live_server() as one, live_server() as two:
        httpx.post(one.url + TENSOR, json={"shape": [2], "init": {"scheme": "ones"}})
        count = _value(_samples(httpx.get(two.url + "/metrics").text), "initsvc_tensors_generated_total", scheme="ones")
        assert count == 0


def test_streamed_tensors_without_stats_are_counted_too(fresh):
    # stats: false streams each piece as it is made; the tensor still counts once, by its scheme.
    _, client = fresh
    before = _value(_scrape(client), "initsvc_tensors_generated_total", scheme="kaiming_normal")
    response = client.post(TENSOR, json={"shape": [8, 8], "init": {"scheme": "kaiming_normal"}, "stats": False, "seed": 0})
    assert response.status_code == 200
    assert _value(_scrape(client), "initsvc_tensors_generated_total", scheme="kaiming_normal") == before + 1
