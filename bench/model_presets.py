"""GPT-2 small's whole from-scratch state_dict: through the service end to end against transformers'
own constructor in process, side by side in one run; and the server's peak RSS above idle.

    python -m bench.model_presets [--repeats 3] [--model transformers/GPT2LMHeadModel]

In process: ``torch.manual_seed(0); GPT2LMHeadModel(GPT2Config())`` (transformers must be installed:
``bash .ci/install-reference-libraries``). Through the service: ``POST /v1/model`` with the same seed,
the body read by ``curl -o /dev/null`` (httpx tops out near 0.6 GB/s), the server started fresh
in a subprocess. Peak RSS is the server's VmHWM after the request, reset to the current RSS before it
(``/proc/PID/clear_refs``), minus its idle RSS. The first service request also checks that the answer's
``transformer.h.0.attn.c_attn.weight`` has the in-process model's bytes.

Prints a markdown table for ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time

import safetensors.torch
import torch

from bench._servers import peak_rss_bytes, reset_peak_rss, rss_bytes, serve


def in_process(repeats: int) -> tuple[list[float], dict[str, torch.Tensor]]:
    import transformers

    times, state = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
        times.append(time.perf_counter() - start)
        state = model.state_dict()
        del model
    return times, state


def through_service(url: str, pid: int, repeats: int, body: dict) -> tuple[list[float], list[int], int, str]:
    times, peaks = [], []
    idle = rss_bytes(pid)
    path = tempfile.mktemp(suffix=".safetensors")
    for i in range(repeats):
        reset_peak_rss(pid)
        out = path if i == 0 else "/dev/null"
        start = time.perf_counter()
        done = subprocess.run(
            ["curl", "-s", "-o", out, "-w", "%{http_code} %{size_download}", "-H", "content-type: application/json",
             "-d", json.dumps(body), f"{url}/v1/model"],
            check=True, capture_output=True, text=True,
        )
        times.append(time.perf_counter() - start)
        status, size = done.stdout.split()
        assert status == "200", done.stdout
        peaks.append(peak_rss_bytes(pid) - idle)
    return times, peaks, int(size), path


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    body = {"model": "transformers/GPT2LMHeadModel", "config": {}, "seed": 0}
    with serve() as (url, proc):
        service_times, peaks, size, path = through_service(url, proc.pid, args.repeats, body)
    ref_times, state = in_process(args.repeats)
    answer = safetensors.torch.load_file(path)
    key = "transformer.h.0.attn.c_attn.weight"
    assert torch.equal(answer[key], state[key]), "the service's answer differs from transformers' state_dict"
    os.unlink(path)
    state_bytes = sum(t.numel() * t.element_size() for t in state.values())

    ref, svc = statistics.median(ref_times), statistics.median(service_times)
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"(CPU capability {torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} intra-op threads")
    print()
    print(f"| GPT-2 small (124 M parameters), seed 0 | median of {args.repeats} | ratio |")
    print("|---|---|---|")
    print(f"| transformers `GPT2LMHeadModel(GPT2Config())` in process | {ref:.2f} s | 1.00 |")
    print(f"| `POST /v1/model` end to end (curl, {size / 1e6:.0f} MB body) | {svc:.2f} s | {ref / svc:.2f}x as fast |")
    print()
    peak = max(peaks)
    print(f"Server peak RSS above idle: {peak / 2**20:.0f} MiB = {peak / state_bytes:.2f}x the state_dict's "
          f"{state_bytes / 2**20:.0f} MiB (every key; lm_head.weight is wte.weight's bytes again)")


if __name__ == "__main__":
    main()
