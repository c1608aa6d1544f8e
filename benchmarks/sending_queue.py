"""What a persistent sending queue costs: the in-memory queue and the on-disk one side by
side, each taking N requests and sending them to a no-op sender, in one run.

Per request the persistent queue writes a file, fsyncs it, renames it and fsyncs the
directory (collector/sending/storage.py), then reads it back and removes it when sent.
Network exporters make one request per profile type per window (10 s by default), so the
figure that matters is milliseconds per request, not throughput.

    .venv/bin/python benchmarks/sending_queue.py [--requests 200] [--kib 32] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.sending import QueueItem, SendingQueue
from collector.sending.storage import QueueStorage


async def run(n: int, size: int, directory: Path | None) -> tuple[float, float]:
    """(ms per put, ms per request end to end: put, take, read, send, remove)."""
    done = asyncio.Event()
    sent = 0

    async def send(item: QueueItem) -> None:
        nonlocal sent
        sent += 1
        if sent == n:
            done.set()

    storage = QueueStorage(directory, "bench") if directory is not None else None
    if storage is not None:
        storage.open()
    q = SendingQueue(n + 1, 1, send, logging.getLogger("bench"), max_bytes=0, storage=storage)
    payload = os.urandom(size)
    t0 = time.perf_counter()
    for _ in range(n):
        assert await q.put(QueueItem(payload, 100, "cpu"))
    t_put = time.perf_counter() - t0
    q.start()
    await done.wait()
    t_all = time.perf_counter() - t0
    await q.shutdown(1)
    return 1e3 * t_put / n, 1e3 * t_all / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--kib", type=int, default=32, help="payload size (a compressed window)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="where the queue lives (a real disk)")
    a = p.parse_args()
    mem: list[tuple[float, float]] = []
    disk: list[tuple[float, float]] = []
    for _ in range(a.rounds):  # alternate, so load changes hit both
        mem.append(asyncio.run(run(a.requests, a.kib << 10, None)))
        with tempfile.TemporaryDirectory(dir=a.dir) as d:
            disk.append(asyncio.run(run(a.requests, a.kib << 10, Path(d))))
    where = a.dir or Path(tempfile.gettempdir())
    print(f"{a.requests} requests of {a.kib} KiB, medians of {a.rounds} rounds, disk at {where}")
    print("| queue | ms per put | ms per request end to end |")
    print("|---|---|---|")
    for name, rows in (("in memory", mem), ("persistent", disk)):
        put = statistics.median(r[0] for r in rows)
        total = statistics.median(r[1] for r in rows)
        print(f"| {name} | {put:.3f} | {total:.3f} |")


if __name__ == "__main__":
    main()
