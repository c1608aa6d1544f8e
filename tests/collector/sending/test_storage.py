"""The persistent sending queue: files on disk, CRC checks, the owner lock, byte bounds, and
an exporter that keeps its queue across a restart against a real gRPC server on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from collector.errors import ConfigError
from collector.host import Host
from collector.sending import QueueItem, SendingQueue
from collector.sending.storage import QueueStorage, StorageCorrupt, decode, encode
from exporters.otlp import factory
from tests.support.otlp_fixtures import make_batches
from tests.support.otlp_run import create, fast_retry
from tests.support.otlp_servers import GrpcProfilesServer, Recorder, free_port

LOG = logging.getLogger("test.storage")


def test_encode_decode_and_every_kind_of_damage() -> None:
    blob = encode(42, "cpu", b"payload bytes")
    assert decode(blob) == (42, "cpu", b"payload bytes")
    damaged = {
        "truncated": blob[:-1],
        "longer": blob + b"x",
        "header only": blob[:10],
        "bad magic": b"XXXX" + blob[4:],
        "flipped payload bit": blob[:-3] + bytes([blob[-3] ^ 1]) + blob[-2:],
        "flipped count": blob[:8] + bytes([blob[8] ^ 1]) + blob[9:],
    }
    for what, bad in damaged.items():
        with pytest.raises(StorageCorrupt):
            decode(bad)
        assert what


def test_put_open_order_and_leftovers(tmp_path: Path) -> None:
    s = QueueStorage(tmp_path / "q", "otlp/backend")
    assert s.open().entries == []
    for i in range(5):
        s.put(f"req{i}".encode(), 10 + i, "cpu")
    s.close()
    files = sorted(p.name for p in s.dir.iterdir() if p.name.endswith(".req"))
    assert len(files) == 5 and s.dir.name == "otlp%2Fbackend"
    assert stat.S_IMODE(s.dir.stat().st_mode) == 0o700
    # A crash mid-write leaves a .tmp; a bit flips in one file; one is cut short.
    (s.dir / "0000000000000009.req.tmp").write_bytes(b"half a request")
    second = s.dir / files[1]
    b = bytearray(second.read_bytes())
    b[-1] ^= 0xFF
    second.write_bytes(bytes(b))
    fourth = s.dir / files[3]
    fourth.write_bytes(fourth.read_bytes()[:-4])
    (s.dir / "zz-not-hex.req").write_bytes(encode(1, "cpu", b"x"))

    s2 = QueueStorage(tmp_path / "q", "otlp/backend")
    report = s2.open()
    assert (report.corrupt, report.incomplete) == (3, 1)
    assert [e.samples for e in report.entries] == [10, 12, 14]  # order kept, bad ones skipped
    assert [s2.read(e) for e in report.entries] == [b"req0", b"req2", b"req4"]
    assert not list(s2.dir.glob("*.tmp")) and len(list(s2.dir.glob("*.req"))) == 3
    # New requests go after the restored ones.
    assert s2.put(b"req5", 15, "cpu").seq > report.entries[-1].seq
    s2.close()


def test_second_owner_is_refused_in_process_and_across_processes(tmp_path: Path) -> None:
    a = QueueStorage(tmp_path, "otlp")
    a.open()
    with pytest.raises(ConfigError, match=rf"in use by another collector \(pid {os.getpid()}\)"):
        QueueStorage(tmp_path, "otlp").open()
    code = (
        "import sys; from pathlib import Path; from collector.sending.storage import "
        "QueueStorage\ntry:\n QueueStorage(Path(sys.argv[1]), 'otlp').open()\n"
        "except Exception as e:\n print(e); sys.exit(7)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 7 and "in use by another collector" in r.stdout, r
    QueueStorage(tmp_path, "other").open()  # another exporter id is another queue
    a.close()
    QueueStorage(tmp_path, "otlp").open()  # free again once the owner closed it


def test_queue_bounded_in_bytes_and_requests() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        async def send(item: QueueItem) -> None:
            await gate.wait()

        q = SendingQueue(10, 1, send, LOG, max_bytes=100)
        q.start()
        assert q.offer(QueueItem(b"x" * 500, 1))  # an empty queue takes one oversized request
        await asyncio.sleep(0)
        assert q.in_flight == 1 and q.bytes == 0  # in flight is not waiting
        assert q.offer(QueueItem(b"x" * 60, 2))
        assert not q.offer(QueueItem(b"x" * 60, 3))  # 120 bytes would pass the bound
        assert q.offer(QueueItem(b"x" * 40, 4)) and q.bytes == 100
        gate.set()
        await asyncio.sleep(0.05)
        assert len(q) == 0 and q.bytes == 0
        await q.shutdown(1)

    asyncio.run(main())


def test_corrupt_while_queued_is_skipped_and_counted(tmp_path: Path) -> None:
    async def main() -> None:
        gate = asyncio.Event()
        sent: list[bytes] = []
        corrupt: list[int] = []

        async def send(item: QueueItem) -> None:
            await gate.wait()
            sent.append(item.payload)

        storage = QueueStorage(tmp_path, "otlp")
        storage.open()
        q = SendingQueue(10, 1, send, LOG, storage=storage, on_corrupt=corrupt.append)
        q.start()
        for i in range(3):
            assert await q.put(QueueItem(f"r{i}".encode(), i + 1, "cpu"))
        files = sorted(storage.dir.glob("*.req"))
        files[1].write_bytes(b"garbage")  # damaged on disk while waiting
        gate.set()
        while len(sent) < 2:
            await asyncio.sleep(0.01)
        await q.shutdown(1)
        assert sent == [b"r0", b"r2"] and corrupt == [2]
        assert not list(storage.dir.glob("*.req"))  # delivered ones are removed

    asyncio.run(main())


def _exporter_cfg(port: int, directory: Path, **queue: object) -> dict[str, object]:
    return {
        "endpoint": f"127.0.0.1:{port}",
        "tls": {"insecure": True},
        "interval": "1h",
        "timeout": "1s",
        "shutdown_timeout": "200ms",
        "sending_queue": {"storage": {"directory": str(directory)}, **queue},
        "retry_on_failure": fast_retry(max_elapsed_time=0),
    }


def test_exporter_keeps_its_queue_across_a_restart(tmp_path: Path) -> None:
    """Backend down: requests are stored, kept at shutdown (not dropped), restored by the
    next exporter on the same directory and delivered once the backend is up."""

    async def main() -> None:
        port = free_port()
        host1 = Host()
        exp = create(factory, _exporter_cfg(port, tmp_path))
        await exp.start(host1)
        for b in make_batches(300, batch_size=100):
            await exp.export(b)
            await exp.flush()
        await exp.shutdown()
        c1 = host1.counters
        assert c1.get("otlp", "kept_requests_shutdown") == 3
        assert c1.get("otlp", "kept_samples_shutdown") == 300
        assert c1.get("otlp", "dropped_samples_shutdown") == 0
        assert len(list((tmp_path / "otlp").glob("*.req"))) == 3

        rec = Recorder()
        srv = GrpcProfilesServer(rec, port=port)
        await srv.start()
        host2 = Host()
        exp2 = create(factory, _exporter_cfg(port, tmp_path))
        await exp2.start(host2)
        assert host2.counters.gauges()["otlp"]["queue_size"] >= 2  # restored, waiting
        while rec.samples < 300:
            await asyncio.sleep(0.02)
        await exp2.shutdown()
        await srv.stop()
        c2 = host2.counters
        assert c2.get("otlp", "restored_requests") == 3
        assert c2.get("otlp", "restored_samples") == 300
        assert c2.get("otlp", "sent_samples") == rec.samples == 300
        assert not list((tmp_path / "otlp").glob("*.req"))
        assert "otlp" not in host2.counters.gauges()  # gauges leave with the exporter

    asyncio.run(main())


def test_full_disk_drops_and_counts(tmp_path: Path) -> None:
    """A real full disk: a 64 KiB tmpfs (as root, as in CI), or a read-only directory."""
    root = os.geteuid() == 0
    small = tmp_path / "small"
    small.mkdir()
    if root:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)

    async def main() -> Host:
        exp = create(factory, _exporter_cfg(free_port(), small, queue_size=1000))
        host = Host()
        await exp.start(host)
        if not root:
            os.chmod(small / "otlp", 0o500)
        try:
            # Random stacks compress badly: a few windows of 2,000 samples fill 64 KiB.
            for b in make_batches(20_000, batch_size=2_000):
                await exp.export(b)
                await exp.flush()
        finally:
            os.chmod(small / "otlp", 0o700)
        await exp.shutdown()
        return host

    try:
        host = asyncio.run(main())
    finally:
        if root:
            subprocess.run(["umount", str(small)], check=True)
    c = host.counters
    dropped = c.get("otlp", "dropped_samples_storage_error")
    kept = c.get("otlp", "kept_samples_shutdown")
    assert dropped > 0 and c.get("otlp", "dropped_requests_storage_error") > 0
    assert dropped + kept == 20_000  # every sample either stored or counted
