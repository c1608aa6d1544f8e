"""The k8s processor's cost per sample, against building the batch it reads.

A 10 000-sample SymbolizedBatch of 50 processes (half in pods of the test pod list, the
others host processes) goes through ``K8sProcessor.process`` with its caches warm, as in
steady state; beside it, in the same run, the cost of building that batch's Sample objects
(what the symbolizer does per sample anyway), so the ratio says what the processor adds.

    .venv/bin/python benchmarks/k8s_processor.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.component import CreateSettings
from collector.host import Host
from collector.model import ProcessInfo, Sample, Stack, SymbolizedBatch, cpu_profile_type
from processors.k8s import K8sConfig, K8sProcessor
from processors.k8s.pods import index_pod_list

ROOT = Path(__file__).resolve().parents[1]
PODS = ROOT / "tests" / "processors" / "k8s" / "testdata" / "kubelet-pods.json"


def build(procs: list[ProcessInfo], n: int) -> list[Sample]:
    stack = Stack(())
    return [Sample(stack, procs[(i // 20) % len(procs)], 1, 0, "x", i, 1) for i in range(n)]


async def main(rounds: int) -> None:
    cids = list(index_pod_list(json.loads(PODS.read_text())).by_container)
    procs = [
        ProcessInfo(100 + i, f"p{i}", container_id=cids[i % len(cids)] if i % 2 else "")
        for i in range(50)
    ]
    n = 10_000
    batch = SymbolizedBatch(cpu_profile_type(99), build(procs, n))
    proc = K8sProcessor(CreateSettings("k8s", logging.getLogger("bench")), K8sConfig())
    proc._host = Host()
    proc._by_container = index_pod_list(json.loads(PODS.read_text())).by_container
    await proc.process(batch)  # warm the per-process cache, as in steady state
    k8s, base = [], []
    for _ in range(rounds):  # alternate, so both see the same machine load
        t = time.perf_counter()
        await proc.process(batch)
        k8s.append((time.perf_counter() - t) / n)
        t = time.perf_counter()
        build(procs, n)
        base.append((time.perf_counter() - t) / n)
    a, b = statistics.median(k8s), statistics.median(base)
    print(f"k8s processor: {a * 1e9:.0f} ns per sample (median of {rounds} batches of {n})")
    print(f"building the batch's Samples: {b * 1e9:.0f} ns per sample")
    print(f"ratio k8s / building: {a / b:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    asyncio.run(main(ap.parse_args().rounds))
