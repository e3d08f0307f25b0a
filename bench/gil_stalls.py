"""How long the big-job steps keep a Python thread from running: the longest gap a spinning thread
sees while one of them runs beside it (the event loop's view of a GIL held too long).

    python bench/gil_stalls.py [--mib 1024]

Steps: a jump of the MT19937 stream by 7 pieces, the parallel fill of a fresh tensor
(``pieces.fill_in_pieces_``, normal, 2 threads) and freeing it. The switch interval is the
server's (1 ms).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import service.app  # noqa: E402,F401  (MKL_CBWR before torch)
from service.engine import mt19937, pieces  # noqa: E402


def longest_gap_during(fn) -> tuple[float, float]:
    """(seconds ``fn`` took, the longest gap between two turns of a thread spinning beside it)."""
    stop = threading.Event()
    worst = [0.0]

    def spin() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            worst[0] = max(worst[0], now - last)
            last = now
            time.sleep(0)

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    fn()
    took = time.perf_counter() - t0
    time.sleep(0.05)
    stop.set()
    spinner.join()
    return took, worst[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    sys.setswitchinterval(0.001)
    n = args.mib * (1 << 20) // 4
    base = mt19937.state_at(0, 0)
    mt19937.jump(base, 1)  # the jump table, built once
    box: dict[str, torch.Tensor] = {"t": torch.empty(n)}

    def free() -> None:
        del box["t"]

    steps = {
        "jump by 7 pieces": lambda: mt19937.jump(base, pieces.PIECE_ELEMENTS * 7 // 624),
        f"parallel fill of {args.mib} MiB": lambda: pieces.fill_in_pieces_(box["t"], "normal", 0.0, 1.0, 0, 0, 2),
        f"free {args.mib} MiB": free,
    }
    for name, fn in steps.items():
        took, gap = longest_gap_during(fn)
        print(f"{name:28s} took {took * 1e3:8.1f} ms, longest gap beside it {gap * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
