"""CPU throughput of rng "portable-v1" against torch's native generators.

Makes 2^26 float32 uniform(0, 1) and normal(0, 1) values three ways and prints the best of
``--reps`` runs:

* torch native: ``torch.empty(n).uniform_/normal_(generator=torch.Generator().manual_seed(0))``
  (MT19937; what rng "torch" runs);
* torch engine: ``service.engine.portable.portable_fill`` (int64/float64 eager ops, numpy sqrt);
* numpy core: ``service.portable.generate`` (what clients run).

Usage: ``python bench/portable_vs_native.py [--log2n 26] [--reps 3] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import service.app  # noqa: E402,F401  (sets MKL_CBWR before torch loads)

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402

from service.engine.portable import portable_fill  # noqa: E402
from service.portable import generate  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_of(reps: int, fn) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _paths(kind: str, n: int) -> dict[str, Callable[[], object]]:
    """The three ways to make n float32 ``kind`` values, each a call to time."""
    recipe = {"scheme": kind}
    cpu = torch.device("cpu")

    def native() -> None:
        g = torch.Generator().manual_seed(0)
        t = torch.empty(n)
        (t.uniform_ if kind == "uniform" else t.normal_)(generator=g)

    return {
        "torch native": native,
        "torch engine": lambda: portable_fill([n], recipe, 0, 0, torch.float32, cpu),
        "numpy core": lambda: generate(recipe, [n], 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log2n", type=int, default=26, help="elements = 2^log2n (default 26)")
    parser.add_argument("--reps", type=int, default=3, help="runs per path; the best is kept (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 1 << args.log2n

    print(f"command: python {' '.join(sys.argv)}")
    print(f"cpu: {cpu_name()}, {os.cpu_count()} logical cores, "
          f"torch capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__} (1 thread)")
    print(f"n = 2^{args.log2n} = {n} float32, best of {args.reps}")
    print()
    print(f"{'kind':8} {'path':14} {'seconds':>8} {'M elem/s':>9} {'time / native':>14}")
    for kind in ("uniform", "normal"):
        paths = _paths(kind, n)
        base = None
        for name, fn in paths.items():
            s = best_of(args.reps, fn)
            base = base or s
            print(f"{kind:8} {name:14} {s:8.3f} {n / s / 1e6:9.1f} {s / base:13.1f}x")


if __name__ == "__main__":
    main()
