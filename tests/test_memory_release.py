"""A finished response's tensors are freed when the response ends, not when the next job is made.

Back-to-back requests on one worker thread: when the second job starts making its tensor, the
first response (read to its end by the client, its admission slot given back) must no longer
hold its tensor. Each made tensor is followed with a weakref; nothing here depends on timing.
"""

from __future__ import annotations

import threading
import time
import weakref

import httpx
import pytest
from safetensors.torch import load

import service.workers.jobs as jobs
from tests.conftest import live_server
from tests.torch_reference import as_bytes, reference


class Recorder:
    """Wraps make_tensor: keeps a weakref to every made tensor, and at the start of each job
    notes which earlier tensors are still alive."""

    def __init__(self, real):
        self.real = real
        self.refs: list[weakref.ref] = []
        self.alive_at_start: list[list[bool]] = []
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.alive_at_start.append([r() is not None for r in self.refs])
        made = self.real(*args, **kwargs)
        with self.lock:
            self.refs.append(weakref.ref(made.tensor))
        return made


@pytest.fixture
def recorder(monkeypatch):
    r = Recorder(jobs.make_tensor)
    monkeypatch.setattr(jobs, "make_tensor", r)
    return r


def _drained(pool, timeout=30.0) -> None:
    """Wait until the server has given back every admitted byte (the response's last step)."""
    deadline = time.monotonic() + timeout
    while pool.admissions["cpu"].in_flight_bytes and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pool.admissions["cpu"].in_flight_bytes == 0


@pytest.mark.parametrize(
    "extra, headers",
    [({}, {}), ({"stats": False}, {}), ({}, {"accept": "application/json"})],
    ids=["stats", "streamed", "json"],
)
def test_a_finished_response_no_longer_holds_its_tensor_when_the_next_job_starts(recorder, extra, headers):
    shape = [1 << 18]  # 1 MiB float32: past the small-job lane only if it is on, so turn it off
    with live_server(small_job_bytes=0) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        pool = server.app.state.pool
        for seed in (1, 2, 3):
            body = {"shape": shape, "init": {"scheme": "normal"}, "seed": seed, "device": "cpu", **extra}
            r = client.post("/v1/tensor", json=body, headers=headers)
            assert r.status_code == 200
            if not headers:
                assert as_bytes(load(r.content)["weight"]) == as_bytes(reference(shape, "normal", {}, "float32", seed))
            _drained(pool)
    # Every earlier tensor was gone by the time the next job started making its own.
    assert recorder.alive_at_start == [[], [False], [False, False]]



def test_a_big_body_is_given_back_off_the_event_loop_once_sent(monkeypatch):
    """Bodies of REAP_BYTES or more are freed on the reaper thread (a GiB's munmap would stall the
    loop); once the reaper has caught up, nothing of the finished response's arrays is left."""
    import service.workers.streaming as streaming

    handed: list[weakref.ref] = []
    real_dispose = streaming.Segments.dispose

    def recording_dispose(self):
        handed.extend(weakref.ref(o) for o in self._owners)
        real_dispose(self)

    monkeypatch.setattr(streaming.Segments, "dispose", recording_dispose)
    n = streaming.REAP_BYTES // 4  # float32: exactly REAP_BYTES
    with live_server() as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for extra in ({}, {"stats": False}):
            body = {"shape": [n], "init": {"scheme": "uniform"}, "seed": 4, "device": "cpu", **extra}
            r = client.post("/v1/tensor", json=body)
            assert r.status_code == 200
            assert as_bytes(load(r.content)["weight"]) == as_bytes(reference([n], "uniform", {}, "float32", 4))
            del r
            _drained(server.app.state.pool)
        assert handed  # the bodies' arrays went to the reaper
        assert streaming._reaper().flush(30)
        assert [ref() is None for ref in handed] == [True] * len(handed)


def test_a_preset_unit_leaves_nothing_for_the_cyclic_gc():
    """A unit made by the build's ops (``accounting.make``) frees its storages as soon as its
    tensor is dropped, with the cyclic GC off: nothing of it sits in a reference cycle (a
    recursive closure kept every storage made until the next GC pass, ~2x what admission counts
    for a streamed model)."""
    import gc

    from service.presets import PRESETS, accounting

    preset = PRESETS["transformers/LlamaForCausalLM"]
    config, _ = preset.resolve({"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 96,
                                "num_attention_heads": 2, "vocab_size": 100})
    rec = accounting.recording(preset, config)
    units = [u for u in accounting.plan_units(rec, list(rec.keys)) if u.op is None]
    assert units
    walk = accounting.StreamWalk(rec, sorted({i for u in units for i in u.slice.needed}), 0)
    gc.collect()
    gc.disable()
    try:
        for unit in units:
            for op in unit.slice.needed:
                if rec.ops[op].draws_rng:
                    walk.state(op)
            made = accounting.make(rec, unit.slice, 0, walk)
            assert made[unit.key].numel() == unit.numel
            del made
        leftovers = gc.collect()  # what only the cyclic GC could free
    finally:
        gc.enable()
    assert leftovers == 0
