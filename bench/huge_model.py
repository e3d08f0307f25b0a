"""One tensor of Llama-2-7B's default config without making the rest: through the service end to
end, against the whole model's serial construction in process (extrapolated from a measured
prefix of layers: the 27 GB model is not built).

    python -m bench.huge_model [--repeats 3]

Through the service: ``POST /v1/model`` with ``tensors: ["model.layers.31.mlp.down_proj.weight"]``
(4096 x 11008 = 45 M float32, 180 MB), ``stats: false``, seed 0, the body read by ``curl -o
/dev/null``, the server started fresh in a subprocess. The first request also records the build on
``meta`` and builds the jump tables; later ones find both cached. Peak RSS is the server's VmHWM
during the request (reset to the current RSS before it) minus its RSS before it.

In process: the preset's replay (``service/presets/llama.py``: the reference's modules, draws
and init pass in plain torch) under ``torch.manual_seed(0)`` with 1 and 2 decoder layers and the
default widths; the whole model's time is t(1) + 31 * (t(2) - t(1)), an extrapolation, stated as
such. A correctness check first: the service's ``model.layers.1.mlp.down_proj.weight`` of the
2-layer config equals the in-process build's.

Prints a markdown table for ``BENCHMARKS.md``.

    python -m bench.huge_model --whole-streamed [--layers 4] [--repeats 2]

The whole state_dict of the default config (or its first ``--layers`` decoder layers) in bfloat16,
``stats: false``, to ``curl -o /dev/null``, with ``INITSVC_MAX_REQUEST_BYTES`` raised: made in
parallel from jumped generators and streamed in bounded memory. Throughput (body bytes / time)
and the server's peak RSS above its RSS before the request; after a first request that records
the build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import safetensors.torch
import torch

from bench._servers import peak_rss_bytes, reset_peak_rss, rss_bytes, serve
from bench.model_presets import cpu_name
from service.presets import PRESETS
from service.presets.replay import replay

MODEL = "transformers/LlamaForCausalLM"
KEY = "model.layers.31.mlp.down_proj.weight"


def post(url: str, body: dict, out: str = "/dev/null") -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(
        ["curl", "-s", "-o", out, "-w", "%{http_code} %{size_download}", "-H", "content-type: application/json",
         "-d", json.dumps(body), f"{url}/v1/model"],
        check=True, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    status, size = done.stdout.split()
    assert status == "200", done.stdout
    return elapsed, int(size)


def in_process(layers: int, repeats: int) -> float:
    config, _ = PRESETS[MODEL].resolve({"num_hidden_layers": layers})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, _ = replay(PRESETS[MODEL], config, 0)
        times.append(time.perf_counter() - start)
        del state
    return statistics.median(times)


def whole_streamed(layers: int | None, repeats: int) -> None:
    config = {} if layers is None else {"num_hidden_layers": layers}
    body = {"model": MODEL, "config": config, "seed": 0, "stats": False, "dtype": "bfloat16"}
    with serve(env={"INITSVC_MAX_REQUEST_BYTES": str(64 << 30)}) as (url, proc):
        first, size = post(url, body)
        runs, peaks = [], []
        for _ in range(repeats):
            before = rss_bytes(proc.pid)
            reset_peak_rss(proc.pid)
            elapsed, _ = post(url, body)
            runs.append(elapsed)
            peaks.append(peak_rss_bytes(proc.pid) - before)
    t = statistics.median(runs)
    what = "default config (32 layers)" if layers is None else f"first {layers} of 32 decoder layers"
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print()
    print(f"| Llama-2-7B, {what}, bfloat16, whole, `stats: false` | body | time | throughput | peak RSS above idle |")
    print("|---|---|---|---|---|")
    print(f"| first request (records the build) | {size / 1e9:.2f} GB | {first:.2f} s | {size / first / 1e9:.2f} GB/s | |")
    print(f"| median of {repeats} later requests | {size / 1e9:.2f} GB | {t:.2f} s | {size / t / 1e9:.2f} GB/s "
          f"| {max(peaks) / 2**20:.0f} MiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--whole-streamed", action="store_true", help="the whole state_dict, streamed (see above)")
    parser.add_argument("--layers", type=int, default=None, help="with --whole-streamed: a prefix of decoder layers")
    args = parser.parse_args()
    if args.whole_streamed:
        whole_streamed(args.layers, args.repeats)
        return

    small = {"model": MODEL, "config": {"num_hidden_layers": 2}, "seed": 0, "stats": False,
             "tensors": ["model.layers.1.mlp.down_proj.weight"]}
    body = {"model": MODEL, "seed": 0, "stats": False, "tensors": [KEY]}
    path = tempfile.mktemp(suffix=".safetensors")
    with serve() as (url, proc):
        post(url, small, path)
        first, size = post(url, body)
        warm, peaks = [], []
        for _ in range(args.repeats):
            before = rss_bytes(proc.pid)
            reset_peak_rss(proc.pid)
            elapsed, _ = post(url, body)
            warm.append(elapsed)
            peaks.append(peak_rss_bytes(proc.pid) - before)
    config2, _ = PRESETS[MODEL].resolve({"num_hidden_layers": 2})
    check_key = small["tensors"][0]
    expected = replay(PRESETS[MODEL], config2, 0)[0][check_key]
    assert torch.equal(safetensors.torch.load_file(path)[check_key], expected), "the service's key differs"
    os.unlink(path)

    t1, t2 = in_process(1, args.repeats), in_process(2, args.repeats)
    per_layer = t2 - t1
    whole = t1 + 31 * per_layer
    svc = statistics.median(warm)
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"(CPU capability {torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} intra-op threads")
    print()
    print(f"| Llama-2-7B default config, seed 0, `{KEY}` | time | ratio |")
    print("|---|---|---|")
    print(f"| whole model, serial construction in process: t(1 layer) = {t1:.2f} s, + {per_layer:.2f} s per layer, "
          f"extrapolated to 32 layers (27 GB) | {whole:.1f} s | 1 |")
    print(f"| `POST /v1/model` with `tensors`, first request (records the build, builds jump tables; "
          f"{size / 1e6:.0f} MB body) | {first:.2f} s | {whole / first:.0f}x as fast |")
    print(f"| the same, median of {args.repeats} later requests | {svc:.2f} s | {whole / svc:.0f}x as fast |")
    print()
    print(f"Server peak RSS above its RSS before the request: {max(peaks) / 2**20:.0f} MiB "
          f"(the tensor is {4096 * 11008 * 4 / 2**20:.0f} MiB; the model would be about 25700 MiB)")


if __name__ == "__main__":
    main()
