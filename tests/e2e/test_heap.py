"""Ground truth for the heap receiver through the real CLI (issue #9).

tests/workloads/heap_leak.c (-O0, frame pointers) leaks 4 KiB per call from leak(), churns
malloc/free of 256-768 bytes from churn() (20 per leak) and does time-based work between
calls. It starts once the collector has attached to it (a line on stdin), reports how much it
leaked, and keeps its memory until the collector has written its last window.

Sampled mode at sample_bytes 32768: >= 95 % of the estimated inuse_space is under leak, the
estimate is within 20 % of the real leak, churn has >= 90 % of alloc_objects and < 5 % of
inuse_space; `go tool pprof -sample_index=inuse_space -top` reads the file and the OTLP
requests (one Profile per value type over one dictionary) pass collector/otlp/validate.
page_faults mode on the same workload: leak is on the stack of most page-fault samples.
"""

from __future__ import annotations

import functools
import gzip
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc

from collector.otlp import validate_request
from tests.support.collector_run import start_collector
from tests.support.encoding_pprof import decode, go_pprof
from tests.support.workloads import build

pytestmark = pytest.mark.bpf

SECONDS = 4.0
CONFIG = """
receivers:
  heap:
    pids: [%(pid)d]
    mode: %(mode)s
    sample_bytes: 32768
    interval: 3600
processors:
  symbolize: {}
exporters:
  pprof:
    directory: %(out)s
    interval: 3600
  otlp_http:
    endpoint: http://127.0.0.1:%(port)d
service:
  telemetry:
    metrics: {address: ""}
  pipelines:
    profiles:
      receivers: [heap]
      processors: [symbolize]
      exporters: [pprof, otlp_http]
"""


class _Otlp(BaseHTTPRequestHandler):
    requests: list[svc.ExportProfilesServiceRequest] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = svc.ExportProfilesServiceRequest()
        req.ParseFromString(body)
        type(self).requests.append(req)
        out = svc.ExportProfilesServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Run:
    leaked_bytes: int
    pprof: Path
    otlp: tuple[svc.ExportProfilesServiceRequest, ...]
    logs: str


@functools.cache
def run(mode: str) -> Run:
    binary = build("heap_leak")
    tmp = Path(tempfile.mkdtemp(prefix=f"collector-heap-{mode}-"))
    handler = type("Handler", (_Otlp,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wl = subprocess.Popen(
        [str(binary), str(SECONDS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert wl.stdin is not None and wl.stdout is not None
    try:
        cfg = tmp / "collector.yaml"
        cfg.write_text(
            CONFIG % {"pid": wl.pid, "mode": mode, "out": tmp, "port": server.server_port}
        )
        col = start_collector(cfg)
        try:
            wl.stdin.write("go\n")
            wl.stdin.flush()
            words = wl.stdout.readline().split()  # the workload is done, its leak still held
            leaked = int(words[words.index("leaked_bytes") + 1])
        finally:
            rc = col.stop()
        assert rc == 0, col.stderr
    finally:
        wl.stdin.close()
        wl.wait()
        server.shutdown()
    files = sorted(tmp.glob(f"{'heap' if mode == 'sampled' else 'page_faults'}-*.pb.gz"))
    assert len(files) == 1, (files, col.stderr)
    return Run(leaked, files[0], tuple(handler.requests), col.stderr())


def shares(path: Path, index: str) -> tuple[dict[str, float], float]:
    """Per function: the share of value type ``index`` in samples with it on the stack."""
    p = decode(path.read_bytes())
    types = [p.string_table[t.type] for t in p.sample_type]
    k = types.index(index)
    fn_name = {f.id: p.string_table[f.name] for f in p.function}
    loc_fns = {loc.id: {fn_name[ln.function_id] for ln in loc.line} for loc in p.location}
    total = 0.0
    under: dict[str, float] = {}
    for s in p.sample:
        v = s.value[k]
        total += v
        for name in set().union(*(loc_fns[i] for i in s.location_id)):
            under[name] = under.get(name, 0.0) + v
    return {n: v / total for n, v in under.items()}, total


def test_inuse_space_is_the_leak() -> None:
    r = run("sampled")
    share, total = shares(r.pprof, "inuse_space")
    assert share.get("leak", 0) >= 0.95, share
    assert abs(total - r.leaked_bytes) <= 0.2 * r.leaked_bytes, (total, r.leaked_bytes)
    assert share.get("churn", 0) < 0.05, share


def test_churn_has_the_allocations_not_the_memory() -> None:
    r = run("sampled")
    objects, _ = shares(r.pprof, "alloc_objects")
    assert objects.get("churn", 0) >= 0.90, objects


def test_go_pprof_reads_inuse_space() -> None:
    r = run("sampled")
    out = go_pprof(r.pprof, "-sample_index=inuse_space", "-top")
    assert "Type: inuse_space" in out, out
    top = [ln.split()[-1] for ln in out.splitlines() if ln.strip().endswith("leak")]
    assert top, out
    default = go_pprof(r.pprof, "-top")  # default_sample_type: inuse_space
    assert "Type: inuse_space" in default, default


def test_otlp_is_valid_one_profile_per_value_type() -> None:
    r = run("sampled")
    assert r.otlp, r.logs
    for req in r.otlp:
        assert validate_request(req, strict=True) == []
    names = set()
    for req in r.otlp:
        strings = req.dictionary.string_table
        for rp in req.resource_profiles:
            for sp in rp.scope_profiles:
                for prof in sp.profiles:
                    names.add(strings[prof.sample_type.type_strindex])
    assert {"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"} <= names, names
    assert {"leak_objects", "leak_space"} <= names, names


def test_page_faults_are_under_the_leak() -> None:
    r = run("page_faults")
    share, total = shares(r.pprof, "page_faults")
    assert total > 100, total
    # Most first touches are glibc's _int_malloc writing the next chunk's header: glibc has
    # no frame pointers, so leak is seen only through the table unwinder (unwind: auto).
    assert share.get("leak", 0) > 0.5, share
    assert "unwind_unavailable" not in r.logs, r.logs
    out = go_pprof(r.pprof, "-top")
    assert "Type: page_faults" in out, out
