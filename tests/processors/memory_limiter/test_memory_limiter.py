"""memory_limiter: verdicts from the real RSS of this process, and a flood through the real
CLI (a plugin receiver making distinct samples as fast as it can) that, with the limiter,
never takes the collector's RSS past the hard limit, while the same flood without it does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from collector.component import CreateSettings
from collector.host import Host, ScopedHost
from collector.model import SymbolizedBatch, cpu_profile_type
from collector.telemetry import MemoryPressure
from processors.memory_limiter import MemoryLimiterConfig, MemoryLimiterProcessor
from processors.memory_limiter.processor import rss_bytes
from tests.support.collector_run import CollectorProcess, start_collector
from tests.support.plugins import install_plugin

LIMIT_MIB = 160
SPIKE_MIB = 50  # soft limit 110 MiB; the flood grows ~10-20 MiB per 0.1 s check at most


def _processor(limit_mib: int, spike: int | None = None) -> MemoryLimiterProcessor:
    cfg = MemoryLimiterConfig(limit_mib=limit_mib, spike_limit_mib=spike, check_interval=0.05)
    return MemoryLimiterProcessor(CreateSettings("memory_limiter", logging.getLogger("t")), cfg)


def test_config_defaults_and_soft_below_hard() -> None:
    c = MemoryLimiterConfig(limit_mib=500)
    assert c.spike() == 100 and c.soft_bytes() == 400 << 20 and c.hard_bytes() == 500 << 20
    with pytest.raises(ValidationError, match="must be below limit_mib"):
        MemoryLimiterConfig(limit_mib=100, spike_limit_mib=100)
    with pytest.raises(ValidationError, match="limit_mib"):
        MemoryLimiterConfig()


def test_verdicts_follow_the_real_rss_and_are_shared() -> None:
    batch = SymbolizedBatch(cpu_profile_type(99), [], "r")
    rss_mib = rss_bytes() >> 20

    async def main() -> None:
        host = Host()
        scoped = ScopedHost(host, "processors")
        roomy, tight = _processor(rss_mib + 1000), _processor(rss_mib + 1000)
        await roomy.start(scoped)
        await tight.start(scoped)
        assert roomy.checker is tight.checker  # one checker per setting, every pipeline
        assert await roomy.process(batch) is batch and host.pressure.level == 0
        soft = _processor(rss_mib + 20, spike=rss_mib)  # soft limit 20 MiB, hard above RSS
        hard = _processor(max(rss_mib // 2, 16), spike=1)  # far below this process's RSS
        await soft.start(ScopedHost(host, "processors"))
        assert host.pressure.level == MemoryPressure.SOFT
        assert await soft.process(batch) is None
        await hard.start(ScopedHost(host, "processors"))
        assert host.pressure.level == MemoryPressure.HARD and host.pressure.sampling_factor == 0
        assert await hard.process(batch) is None
        c = host.counters
        assert c.get("processors/memory_limiter", "refused_batches") == 1
        assert c.get("processors/memory_limiter", "dropped_batches_hard_limit") == 1
        gauges = host.counters.gauges()["processors/memory_limiter"]
        assert gauges["hard_limit_bytes"] > 0 and gauges["rss_bytes"] > 0
        for p in (roomy, tight, soft, hard):
            await p.shutdown()
        assert host.pressure.level == MemoryPressure.NONE  # released with the last one

    asyncio.run(main())


class RssWatch:
    """Samples a process's VmRSS every 10 ms in a thread: the peak it saw, in MiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self._stop.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) / 1024)
                            self.samples += 1
            except OSError:
                return
            time.sleep(0.01)

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        return self.peak


CONFIG = """
receivers:
  flood:
    interval: 0.01
    batch_samples: 2000
    honour_pressure: %(honour)s
processors:
%(processors)s
exporters:
  folded:
    directory: %(out)s
    interval: 600
service:
  pipelines:
    profiles:
      receivers: [flood]
      processors: [%(names)s]
      exporters: [folded]
"""


@pytest.fixture(scope="module")
def flood_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin("flood_plugin", tmp_path_factory.mktemp("flood_plugin"))


def _run_flood(
    tmp: Path, plugin: Path, limiter: bool, seconds: float
) -> tuple[float, CollectorProcess]:
    lim = f"  memory_limiter:\n    limit_mib: {LIMIT_MIB}\n    spike_limit_mib: {SPIKE_MIB}\n"
    lim += "    check_interval: 100ms\n"
    cfg = tmp / f"flood-{limiter}.yaml"
    cfg.write_text(
        CONFIG
        % {
            "honour": "true" if limiter else "false",
            "processors": lim if limiter else "  {}",
            "names": "memory_limiter" if limiter else "",
            "out": tmp / "out",
        }
    )
    col = start_collector(cfg, env={"PYTHONPATH": str(plugin)})
    watch = RssWatch(col.proc.pid)
    deadline = time.monotonic() + seconds
    try:
        # The control run stops as soon as it has shown the flood passes the limit.
        while time.monotonic() < deadline and col.proc.poll() is None:
            if not limiter and watch.peak > LIMIT_MIB:
                break
            time.sleep(0.05)
    finally:
        peak = watch.stop()
        col.stop()
    return peak, col


@pytest.mark.slow
def test_flood_never_takes_rss_past_the_hard_limit(tmp_path: Path, flood_plugin: Path) -> None:
    # Control: the same flood without the limiter goes past the limit, so the check below
    # can fail.
    peak_without, col = _run_flood(tmp_path, flood_plugin, limiter=False, seconds=60)
    assert peak_without > LIMIT_MIB, (peak_without, col.logs()[-3000:])

    peak, col = _run_flood(tmp_path, flood_plugin, limiter=True, seconds=20)
    print(f"peak RSS MiB: without limiter {peak_without:.1f}, with {peak:.1f} (hard {LIMIT_MIB})")
    logs = col.logs()
    assert peak < LIMIT_MIB, (peak, logs[-3000:])
    assert "memory above the soft limit" in logs, logs[-3000:]
    refused = [ln for ln in logs.splitlines() if "component=processors/memory_limiter" in ln]
    assert any("refused_samples=" in ln for ln in refused), logs[-3000:]
    throttled = [ln for ln in logs.splitlines() if "component=receivers/flood" in ln]
    assert any("throttled_batches=" in ln for ln in throttled), logs[-3000:]
