"""How often a worker thread gets the GIL while the event loop writes a big body, per event loop.

    python bench/loop_writes.py [--mib 1024] [--write-mib 2]

A transport of each loop (asyncio's, uvloop's) writes ``--mib`` MiB over loopback to ``cat`` in
another process, in writes of ``--write-mib`` MiB (the server's ``WRITE_BYTES``), yielding after
each write and waiting for its buffer to drain as a server's body does. Beside it a thread spins,
taking the GIL once per turn (what a small job on a device worker does dozens of times). Printed:
the time to write, the thread's turns, and the longest gaps between two of its turns. The
server's switch interval (1 ms) is set as it is while serving.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import threading
import time


async def write_body(nbytes: int, write_bytes: int) -> tuple[float, list[float]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    reader = subprocess.Popen(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}; cat <&3 >/dev/null"])
    conn, _ = server.accept()
    conn.setblocking(False)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, conn)
    body = memoryview(bytearray(nbytes))  # before the spinner: zero-filling holds the GIL
    stop, gaps = threading.Event(), []

    def spin() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            time.sleep(0)  # gives the GIL up and takes it back: one turn

    spinner = threading.Thread(target=spin)
    spinner.start()
    t0 = time.perf_counter()
    for start in range(0, nbytes, write_bytes):
        transport.write(body[start : start + write_bytes])
        await asyncio.sleep(0)
        while transport.get_write_buffer_size() > 64 << 10:  # paused: wait for the socket to drain
            await asyncio.sleep(0.0005)
    while transport.get_write_buffer_size():
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    stop.set()
    spinner.join()
    transport.close()
    reader.kill()
    reader.wait()
    server.close()
    return elapsed, sorted(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--write-mib", type=float, default=2)
    args = parser.parse_args()
    sys.setswitchinterval(0.001)
    nbytes, write_bytes = args.mib << 20, int(args.write_mib * (1 << 20))
    print(f"{args.mib} MiB over loopback in {args.write_mib:g} MiB writes, a thread spinning beside the loop")
    for name in ("asyncio", "uvloop"):
        if name == "uvloop":
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        else:
            runner = asyncio.Runner()
        with runner:
            elapsed, gaps = runner.run(write_body(nbytes, write_bytes))
        p99 = gaps[int(len(gaps) * 0.99)] if gaps else float("nan")
        print(f"{name:8s}: written in {elapsed:.3f} s; the thread's turns {len(gaps)}, "
              f"gap p99 {p99 * 1e3:.2f} ms, max {gaps[-1] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
