"""Streamed bodies: header first, exact length, the same tensor bytes with and without stats."""

from __future__ import annotations

import json

import httpx
import pytest
from safetensors.torch import load

from service.codec.header import decode_header
from tests.torch_reference import as_bytes, reference

# 2^21 + 8 and 2^21 + 16 elements: above the parallel threshold, tails that are and are not
# multiples of 16; and small ones that stay serial.
CASES = [
    pytest.param("uniform", [2**21 + 8], id="uniform-big-n%16=8"),
    pytest.param("uniform", [1001], id="uniform-small"),
    pytest.param("normal", [2**21 + 16], id="normal-big-n%16=0"),
    pytest.param("normal", [2**21 + 9], id="normal-big-n%16=9"),
    pytest.param("normal", [1001], id="normal-small"),
    pytest.param("normal", [7], id="normal-under-16"),
    pytest.param("trunc_normal", [3001], id="trunc-normal-not-streamable"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("scheme,shape", CASES)
def test_stats_false_body_equals_the_stats_body_except_for_the_header(server, scheme, shape, dtype):
    body = {"shape": shape, "init": {"scheme": scheme}, "seed": 21, "device": "cpu", "dtype": dtype}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        with_stats = client.post("/v1/tensor", json=body)
        without = client.post("/v1/tensor", json={**body, "stats": False})
    assert with_stats.status_code == without.status_code == 200
    for r in (with_stats, without):
        assert int(r.headers["content-length"]) == len(r.content)
    expected = as_bytes(reference(shape, scheme, {}, dtype, 21))
    assert as_bytes(load(with_stats.content)["weight"]) == expected
    assert as_bytes(load(without.content)["weight"]) == expected
    meta_with, _, start_with = decode_header(with_stats.content)
    meta_without, _, start_without = decode_header(without.content)
    assert with_stats.content[start_with:] == without.content[start_without:]
    assert "stats" in meta_with and "stats" not in meta_without
    assert json.loads(meta_without["request"])["stats"] is False


def test_streamed_tensors_request_equals_the_whole_one(server):
    entries = [
        {"name": "a", "shape": [2**21 + 5], "init": {"scheme": "normal"}},
        {"name": "b", "shape": [33, 3], "init": {"scheme": "xavier_uniform"}, "dtype": "float16"},
        {"name": "c", "shape": [2**21], "init": {"scheme": "uniform"}},
    ]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        full = client.post("/v1/tensors", json={"seed": 1, "device": "cpu", "tensors": entries})
        streamed = client.post("/v1/tensors", json={"seed": 1, "device": "cpu", "tensors": entries, "stats": False})
    a, b = load(full.content), load(streamed.content)
    assert all(as_bytes(a[k]) == as_bytes(b[k]) for k in a)


def test_stats_false_is_accepted_in_the_query_string(http):
    r = http.get("/v1/tensor", params={"shape": "64,64", "scheme": "normal", "seed": "1", "stats": "false", "device": "cpu"})
    assert r.status_code == 200 and "stats" not in decode_header(r.content)[0]


def test_body_arrives_in_pieces_with_the_header_first(server):
    body = {"shape": [2**22], "init": {"scheme": "uniform"}, "seed": 0, "device": "cpu", "stats": False}
    with httpx.Client(base_url=server.url, timeout=60) as client, client.stream("POST", "/v1/tensor", json=body) as r:
        chunks = list(r.iter_raw())
    assert len(chunks) > 1
    data = b"".join(chunks)
    assert len(data) == int(r.headers["content-length"])
    _, tensors, start = decode_header(data)
    assert tensors["weight"]["data_offsets"] == [0, 4 * 2**22] and len(data) - start == 4 * 2**22


def test_views_queued_or_arriving_after_cancel_are_released():
    import asyncio
    import threading

    from service.workers.streaming import Segments

    async def scenario() -> list[str]:
        released: list[str] = []
        segments = Segments(asyncio.get_running_loop())
        segments.put(memoryview(b"abc"), lambda: released.append("queued"))
        await asyncio.sleep(0)
        segments.cancel()
        late = threading.Thread(target=segments.put, args=(memoryview(b"def"), lambda: released.append("late")))
        late.start()
        late.join()
        await asyncio.sleep(0.05)
        return released

    assert asyncio.run(scenario()) == ["queued", "late"]


def test_a_consumed_view_is_released_after_it_is_sent():
    import asyncio

    from service.workers.streaming import Segments

    async def scenario() -> tuple[bytes, list[str]]:
        released: list[str] = []
        segments = Segments(asyncio.get_running_loop())
        segments.put(memoryview(b"x" * 10), lambda: released.append("one"))
        segments.close()
        got = b"".join([bytes(v) async for v in segments.views()])
        return got, released

    assert asyncio.run(scenario()) == (b"x" * 10, ["one"])


def test_head_of_a_streamed_get_gives_its_exact_length(http):
    params = {"shape": "4,4", "scheme": "normal", "seed": "0", "device": "cpu", "stats": "false"}
    head, get = http.head("/v1/tensor", params=params), http.get("/v1/tensor", params=params)
    assert head.headers["content-length"] == str(len(get.content)) and head.headers["etag"] == get.headers["etag"]


@pytest.mark.parametrize("made_whole", [True, False], ids=["ready body", "streamed body"])
def test_a_body_the_client_takes_as_fast_as_it_is_written_lets_other_requests_run(made_whole):
    """A send that never suspends (the socket takes every write at once) still gives the event
    loop a turn between writes; else every other request, and every finished job's answer, waits
    for the big body's last byte."""
    import asyncio

    from service.api.delivery import BodyResponse
    from service.workers.streaming import WRITE_BYTES, Segments

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        events: list[str] = []
        segments = Segments(loop)
        body = bytes(4 * WRITE_BYTES)
        segments.put(memoryview(body))
        if made_whole:
            segments.close()
        else:
            loop.call_later(0.01, segments.close)  # still being made when the response starts
        done = asyncio.Event()

        async def other_request() -> None:
            while not done.is_set():
                events.append("other")
                await asyncio.sleep(0)

        async def send(message) -> None:  # never suspends, as a socket with room
            if message["type"] == "http.response.body":
                events.append("write")

        async def receive() -> dict:
            await done.wait()
            return {"type": "http.disconnect"}

        length = str(len(b"header") + len(body))
        response = BodyResponse(b"header", segments, lambda: None, {"content-length": length}, 60)
        other = asyncio.ensure_future(other_request())
        await asyncio.sleep(0)
        events.clear()
        await response({"type": "http"}, receive, send)
        done.set()
        await other
        return events

    events = asyncio.run(scenario())
    writes = [i for i, e in enumerate(events) if e == "write"]
    assert len(writes) >= 5  # the header and four views
    assert all("other" in events[a:b] for a, b in zip(writes, writes[1:], strict=False))


@pytest.mark.parametrize("through_response", [False, True], ids=["views", "response"])
def test_a_piece_is_referenced_by_nothing_when_it_is_given_back(through_response):
    """A streaming producer that waits for its pieces to be given back (a model job's window of
    bytes ahead of the socket) starts the next one then, so by then nothing on the sending side
    may hold the piece: else one more piece's memory is alive than the window counts."""
    import asyncio
    import weakref

    import torch

    from service.api.delivery import BodyResponse
    from service.codec.body import tensor_bytes_view
    from service.workers.streaming import WRITE_BYTES, Segments

    async def scenario() -> list[bool]:
        segments = Segments(asyncio.get_running_loop())
        freed_at_release: list[bool] = []
        for _ in range(2):
            view = tensor_bytes_view(torch.zeros(3 * WRITE_BYTES // 4))  # three writes' worth
            piece = weakref.ref(view.obj)
            segments.put(view, lambda piece=piece: freed_at_release.append(piece() is None))
            del view
        if through_response:
            async def send(message) -> None:
                pass

            async def receive() -> dict:
                await asyncio.sleep(3600)
                return {"type": "http.disconnect"}

            length = str(len(b"header") + 2 * 3 * WRITE_BYTES)
            response = BodyResponse(b"header", segments, lambda: None, {"content-length": length}, 60)
            asyncio.get_running_loop().call_later(0.01, segments.close)  # still streaming when it starts
            await response({"type": "http"}, receive, send)
        else:
            segments.close()
            async for chunk in segments.views():
                del chunk
        return freed_at_release

    assert asyncio.run(scenario()) == [True, True]
