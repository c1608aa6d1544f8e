"""The short-lived loader process: compile with bcc, load, attach, hand the fds back, exit.

Run as ``python -m collector.bpf.child <socket fd>`` by collector.bpf.loader. bcc (~77 MB)
and clang (~170 MB peak) live only here. The child leaves with ``os._exit`` so that bcc's
cleanup never runs: it would PERF_EVENT_IOC_DISABLE the perf events whose file descriptions
the parent now shares.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from collector.bpf.attach import PERF_EVENTS, AttachSpec

SCM_MAX_FDS = 250  # the kernel allows 253 fds per SCM_RIGHTS message
SYS_PERF_EVENT_OPEN = 298  # x86-64
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
_DEFINE_VALUE = re.compile(r"^-?[A-Za-z0-9_]+$")


class ChildError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "environment" | "compile" | "runtime"


def _online_cpus() -> list[int]:
    with open("/sys/devices/system/cpu/online") as f:
        cpus: list[int] = []
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
        return cpus


def _perf_event_open(kind: str, freq: int, cpu: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    ev_type, config = PERF_EVENTS[kind]
    attr = bytearray(112)  # PERF_ATTR_SIZE_VER5; the kernel zero-extends
    flags = 1 | (1 << 10)  # disabled, freq
    for off, fmt, val in ((0, "I", ev_type), (4, "I", 112), (8, "Q", config), (16, "Q", freq)):
        attr[off : off + (4 if fmt == "I" else 8)] = val.to_bytes(4 if fmt == "I" else 8, "little")
    attr[40:48] = flags.to_bytes(8, "little")
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(SYS_PERF_EVENT_OPEN, buf, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV):
            raise ChildError(
                "environment",
                f"perf event {kind!r} is not available on this machine ({os.strerror(err)});"
                " use event: cpu-clock",
            )
        raise ChildError("environment", f"perf_event_open({kind}, cpu={cpu}): {os.strerror(err)}")
    return fd


def _attach_perf(bpf: Any, spec: AttachSpec) -> list[tuple[int, dict[str, Any]]]:
    if spec.target not in PERF_EVENTS:
        raise ChildError("runtime", f"unknown perf event {spec.target!r}")
    fn = bpf.load_func(spec.fn_name.encode(), bpf.PERF_EVENT)
    libc = ctypes.CDLL(None, use_errno=True)
    out = []
    for cpu in _online_cpus():
        fd = _perf_event_open(spec.target, spec.sample_freq, cpu)
        for req, arg in ((PERF_EVENT_IOC_SET_BPF, fn.fd), (PERF_EVENT_IOC_ENABLE, 0)):
            if libc.ioctl(fd, req, arg) != 0:
                err = ctypes.get_errno()
                raise ChildError("runtime", f"perf event ioctl on cpu {cpu}: {os.strerror(err)}")
        out.append((fd, {"kind": spec.kind, "target": spec.target, "cpu": cpu}))
    return out


def _attach(bpf: Any, spec: AttachSpec) -> list[tuple[int, dict[str, Any]]]:
    meta = {"kind": spec.kind, "target": spec.target}
    if spec.kind == "perf_event":
        return _attach_perf(bpf, spec)
    if spec.kind == "tracepoint":
        if not os.path.isdir("/sys/kernel/tracing/events") and not os.path.isdir(
            "/sys/kernel/debug/tracing/events"
        ):
            raise ChildError(
                "environment", "tracefs is not mounted: mount -t tracefs nodev /sys/kernel/tracing"
            )
        bpf.attach_tracepoint(tp=spec.target.encode(), fn_name=spec.fn_name.encode())
        return [(bpf.tracepoint_fds[spec.target.encode()], meta)]
    if spec.kind == "raw_tracepoint":
        bpf.attach_raw_tracepoint(tp=spec.target.encode(), fn_name=spec.fn_name.encode())
        return [(bpf.raw_tracepoint_fds[spec.target.encode()], meta)]
    if spec.kind in ("uprobe", "uretprobe"):
        before = set(bpf.uprobe_fds)
        attach = bpf.attach_uprobe if spec.kind == "uprobe" else bpf.attach_uretprobe
        attach(
            name=spec.target.encode(),
            sym=spec.symbol.encode(),
            fn_name=spec.fn_name.encode(),
            pid=spec.pid,
        )
        return [(bpf.uprobe_fds[k], meta) for k in set(bpf.uprobe_fds) - before]
    if spec.kind == "program":  # attached later by the parent (collector/bpf/uprobe.py)
        return [(bpf.load_func(spec.fn_name.encode(), bpf.KPROBE).fd, meta)]
    raise ChildError("runtime", f"unknown attach kind {spec.kind!r}")


def _maps(bpf: Any) -> list[tuple[int, dict[str, Any]]]:
    from bcc.libbcc import lib

    lib.bpf_num_tables.restype = ctypes.c_size_t
    lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    for f in ("bpf_table_key_size_id", "bpf_table_leaf_size_id"):
        getattr(lib, f).restype = ctypes.c_size_t
        getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.bpf_table_fd_id.restype = ctypes.c_int
    lib.bpf_table_fd_id.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    out = []
    for i in range(lib.bpf_num_tables(bpf.module)):
        fd = lib.bpf_table_fd_id(bpf.module, i)
        if fd < 0:
            continue
        out.append(
            (
                fd,
                {
                    "name": lib.bpf_table_name(bpf.module, i).decode(),
                    "type": lib.bpf_table_type_id(bpf.module, i),
                    "key_size": lib.bpf_table_key_size_id(bpf.module, i),
                    "value_size": lib.bpf_table_leaf_size_id(bpf.module, i),
                    "max_entries": lib.bpf_table_max_entries_id(bpf.module, i),
                },
            )
        )
    return out


_LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def inline_local_includes(source: Path, include_dir: Path, seen: set[Path] | None = None) -> str:
    """The source with ``#include "x.h"`` of files in ``include_dir`` pasted in place.

    bcc rewrites map operations (``counters.lookup(...)``) only in the main file, so helpers
    that use maps cannot live in a header that clang includes. ``#line`` keeps compiler
    messages pointing at the right file and line.
    """
    seen = set() if seen is None else seen
    out = [f'#line 1 "{source.name}"']
    for n, line in enumerate(source.read_text().splitlines(), start=1):
        m = _LOCAL_INCLUDE.match(line)
        header = include_dir / m.group(1) if m else None
        if header is None or not header.is_file():
            out.append(line)
            continue
        if header.resolve() not in seen:
            seen.add(header.resolve())
            out.append(inline_local_includes(header, include_dir, seen))
        out.append(f'#line {n + 1} "{source.name}"')
    return "\n".join(out) + "\n"


def _compile(req: dict[str, Any], log: Any) -> Any:
    try:
        from bcc import BPF
    except Exception as exc:
        raise ChildError(
            "environment", f"bcc cannot be imported ({exc}); run scripts/setup.sh"
        ) from exc
    cflags = [f"-I{req['include_dir']}"]
    for name, value in req["defines"].items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not _DEFINE_VALUE.match(str(value)):
            raise ChildError("runtime", f"bad define {name}={value!r}: names and numbers only")
        cflags.append(f"-D{name}={value}")
    text = inline_local_includes(Path(req["source"]), Path(req["include_dir"]))
    try:
        return BPF(text=text.encode(), cflags=cflags)
    except Exception as exc:
        log.flush()
        log.seek(0)
        text = log.read().decode(errors="replace")
        errors = [ln.strip() for ln in text.splitlines() if "error:" in ln]
        detail = " | ".join(errors[:3]) or str(exc).splitlines()[0]
        raise ChildError("compile", f"compiling {req['source']} failed: {detail}") from exc


def _run(sock: socket.socket, req: dict[str, Any], log: Any) -> None:
    bpf = _compile(req, log)
    entries = _maps(bpf)
    maps = [dict(meta, fd_index=i) for i, (_, meta) in enumerate(entries)]
    attachments = []
    for spec_json in req["attach"]:
        for fd, meta in _attach(bpf, AttachSpec.from_json(spec_json)):
            attachments.append(dict(meta, fd_index=len(entries)))
            entries.append((fd, meta))
    fds = [fd for fd, _ in entries]
    for start in range(0, len(fds), SCM_MAX_FDS):
        chunk = fds[start : start + SCM_MAX_FDS]
        socket.send_fds(sock, [json.dumps({"fds": len(chunk)}).encode()], chunk)
    manifest = {"maps": maps, "attachments": attachments, "peak_rss_kb": _peak_rss_kb()}
    sock.sendall(json.dumps({"manifest": manifest}).encode())


def _peak_rss_kb() -> int:
    """This child's high-water RSS (bcc + clang), reported so the cost is visible."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    # bcc and clang print diagnostics on fds 1 and 2: keep them to quote compile errors.
    log = tempfile.TemporaryFile()  # noqa: SIM115 (lives until os._exit)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        req = json.loads(sock.recv(1 << 20))
        _run(sock, req, log)
    except ChildError as exc:
        sock.sendall(json.dumps({"error": {"kind": exc.kind, "message": str(exc)}}).encode())
    except BaseException as exc:
        last = traceback.format_exception(exc)[-1].strip()
        sock.sendall(json.dumps({"error": {"kind": "runtime", "message": last}}).encode())
    # Skip bcc's atexit/destructor cleanup: it would disable and detach what we handed over.
    os._exit(0)


if __name__ == "__main__":
    main()
