"""A 1/8 column shard of a 1 GiB float32 tensor against the whole tensor, in process and over HTTP.

    python bench/column_shards.py                 # [16384, 16384] float32, shard [:, 2048:4096]
    python bench/column_shards.py --reps 2 --no-http

In process, side by side and interleaved (best of ``--reps``):

* whole: a fresh tensor filled by ``pieces.fill_in_pieces_`` on all cores (what the service does),
* shard: ``chunked.fill_slice`` (the selected-draw kernel, ``service/engine/transforms.py``),
* shard, torch path: ``slices.fill_runs`` (one torch generator through the gaps; the path slices
  took before the kernel and still take where it is off).

Each shard is compared byte for byte with the same cut of the whole tensor. Over HTTP the service
runs in a subprocess and curl GETs ``/v1/tensor`` (whole, then ``slice=:,2048:4096``) to /dev/null;
the figure is curl's ``time_total``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from service.engine import chunked, pieces  # noqa: E402
from service.engine.slices import fill_runs, plan_runs  # noqa: E402

SEED = 1234
OPS = {"uniform": (-0.0191, 0.0191), "normal": (0.0, 0.02)}  # kaiming-like bound, GPT-style std


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _best(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def in_process(rows: int, cols: int, lo: int, hi: int, reps: int, threads: int) -> dict:
    shape, bounds = (rows, cols), [(0, rows), (lo, hi)]
    plan = plan_runs(shape, bounds)
    results = {}
    for op, (p1, p2) in OPS.items():
        whole = torch.empty(shape)
        pieces.fill_in_pieces_(whole.view(-1), op, p1, p2, SEED, 0, threads)
        shard = torch.empty(plan.shape)
        chunked.fill_slice(shard, op, p1, p2, SEED, shape, bounds, 0, threads)
        old = torch.empty(plan.shape)
        fill_runs(old.view(-1), plan, op, p1, p2, SEED, 0)
        want = whole[:, lo:hi].contiguous().view(torch.uint8)
        same = torch.equal(shard.view(torch.uint8), want) and torch.equal(old.view(torch.uint8), want)
        del whole, old
        times = {"whole": float("inf"), "shard": float("inf"), "shard_torch_path": float("inf")}
        for _ in range(reps):  # interleaved, so load changes hit every column alike
            runs = {
                "whole": lambda op=op, p1=p1, p2=p2: pieces.fill_in_pieces_(
                    torch.empty(shape).view(-1), op, p1, p2, SEED, 0, threads
                ),
                "shard": lambda op=op, p1=p1, p2=p2: chunked.fill_slice(
                    torch.empty(plan.shape), op, p1, p2, SEED, shape, bounds, 0, threads
                ),
                "shard_torch_path": lambda op=op, p1=p1, p2=p2: fill_runs(
                    torch.empty(plan.shape).view(-1), plan, op, p1, p2, SEED, 0
                ),
            }
            for key, fn in runs.items():
                times[key] = min(times[key], _best(fn, 1))
        results[op] = {**times, "identical": same}
    return results


def over_http(rows: int, cols: int, lo: int, hi: int, reps: int) -> dict:
    from bench._servers import serve

    results = {}
    with serve() as (url, _proc):
        for op in OPS:
            query = f"shape={rows},{cols}&scheme={op}&seed={SEED}&device=cpu&dtype=float32"
            urls = {"whole": f"{url}/v1/tensor?{query}", "shard": f"{url}/v1/tensor?{query}&slice=:,{lo}:{hi}"}
            times = {k: float("inf") for k in urls}
            for _ in range(reps):
                for key, u in urls.items():
                    out = subprocess.run(
                        ["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", u],
                        capture_output=True, text=True, check=True,
                    ).stdout.split()
                    times[key] = min(times[key], float(out[0]))
                    times[key + "_bytes"] = int(out[1])
            results[op] = times
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--cols", type=int, default=16384)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=chunked.default_threads())
    ap.add_argument("--no-http", action="store_true")
    args = ap.parse_args()
    lo, hi = args.cols // 8, args.cols // 4
    facts = {
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average": os.getloadavg(),
        "shape": [args.rows, args.cols],
        "shard": f"[:, {lo}:{hi}]",
        "threads": args.threads,
        "selected_draws": chunked.capability()["selected_draws"],
    }
    print(json.dumps(facts))
    res = in_process(args.rows, args.cols, lo, hi, args.reps, args.threads)
    print(f"in process (best of {args.reps}, seconds)")
    print(f"{'op':8} {'whole':>8} {'shard':>8} {'speed-up':>9} {'torch-path shard':>17} {'its speed-up':>13} identical")
    for op, r in res.items():
        print(f"{op:8} {r['whole']:8.3f} {r['shard']:8.3f} {r['whole'] / r['shard']:8.1f}x "
              f"{r['shard_torch_path']:17.3f} {r['whole'] / r['shard_torch_path']:12.2f}x {r['identical']}")
    if not args.no_http:
        res = over_http(args.rows, args.cols, lo, hi, args.reps)
        print(f"through the service, curl time_total (best of {args.reps}, seconds)")
        print(f"{'op':8} {'whole':>8} {'shard':>8} {'speed-up':>9}  bytes whole / shard")
        for op, r in res.items():
            print(f"{op:8} {r['whole']:8.3f} {r['shard']:8.3f} {r['whole'] / r['shard']:8.1f}x  "
                  f"{r['whole_bytes']} / {r['shard_bytes']}")
    print(json.dumps({"load_average_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
