"""Load a BPF program without importing bcc in the collector.

``load()`` starts ``python -m collector.bpf.child`` with one end of a SOCK_SEQPACKET socketpair,
sends it a JSON request, and receives a manifest plus every map and attachment fd over
SCM_RIGHTS. The child then exits without cleanup, so the parent's fds alone keep the program
attached; ``LoadedProgram.close()`` detaches everything. See README.md for why.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import bpf as bpf_sources
from collector.bpf.attach import AttachSpec
from collector.bpf.syscall import Map
from collector.errors import EnvironmentProblem, RuntimeFailure

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0  # clang on a loaded 2-core machine can take a while


class LoadedProgram:
    """The parent's handle on a loaded, attached program: maps by name and attachment fds."""

    def __init__(self, program: str, maps: dict[str, Map], attachments: list[dict[str, Any]]):
        self.program = program
        self.maps = maps
        # Each: {"kind", "target", "fd", and "cpu" for perf events}.
        self.attachments = attachments
        self.load_seconds = 0.0

    def map(self, name: str) -> Map:
        try:
            return self.maps[name]
        except KeyError:
            raise KeyError(f"program {self.program} has no map {name!r}") from None

    def detach(self) -> None:
        """Close the attachment fds: the programs stop running; the maps stay readable."""
        for att in self.attachments:
            if att["fd"] >= 0:
                os.close(att["fd"])
                att["fd"] = -1

    def close(self) -> None:
        """Close every fd: the kernel detaches the programs and frees the maps. Idempotent."""
        self.detach()
        for m in self.maps.values():
            m.close()

    def __enter__(self) -> LoadedProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(
    program: str,
    defines: Mapping[str, int | str] | None = None,
    attach: list[AttachSpec] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> LoadedProgram:
    """Compile bpf/<program>.bpf.c with ``-DNAME=value`` for each define, load and attach it.

    Raises EnvironmentProblem when the machine lacks something (bcc, tracefs, a perf event)
    and RuntimeFailure for compile errors (with clang's message) and other load failures.
    Blocking (seconds: clang runs); call it from a thread in async code.
    """
    source = bpf_sources.source_path(program)
    request = {
        "source": str(source),
        "include_dir": str(bpf_sources.source_dir()),
        "defines": {k: (v if isinstance(v, str) else int(v)) for k, v in (defines or {}).items()},
        "attach": [a.to_json() for a in attach or []],
    }
    started = time.monotonic()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # The child must import collector.* whatever the caller's working directory is.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with parent:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "collector.bpf.child", str(child.fileno())],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            child.close()
        try:
            parent.settimeout(timeout)
            parent.sendall(json.dumps(request).encode())
            fds, reply = _receive(parent, program)
        except TimeoutError as exc:
            proc.kill()
            raise RuntimeFailure(
                f"loading BPF program {program} timed out after {timeout}s"
            ) from exc
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    try:
        loaded = _build(program, fds, reply)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    loaded.load_seconds = time.monotonic() - started
    log.info(
        "bpf program loaded program=%s maps=%d attachments=%d seconds=%.2f child_peak_rss_mb=%.1f",
        program,
        len(loaded.maps),
        len(loaded.attachments),
        loaded.load_seconds,
        reply.get("peak_rss_kb", 0) / 1024,
    )
    return loaded


def _receive(sock: socket.socket, program: str) -> tuple[list[int], dict[str, Any]]:
    fds: list[int] = []
    try:
        while True:
            data, got, _flags, _addr = socket.recv_fds(sock, 1 << 20, 256, socket.MSG_CMSG_CLOEXEC)
            fds.extend(got)
            if not data:
                raise RuntimeFailure(f"BPF loader for {program} exited without an answer")
            msg = json.loads(data)
            if "fds" in msg:
                continue
            if "error" in msg:
                err = msg["error"]
                cls = EnvironmentProblem if err["kind"] == "environment" else RuntimeFailure
                raise cls(f"BPF program {program}: {err['message']}")
            return fds, msg["manifest"]
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _build(program: str, fds: list[int], manifest: dict[str, Any]) -> LoadedProgram:
    maps = {
        m["name"]: Map(
            fds[m["fd_index"]],
            m["type"],
            m["key_size"],
            m["value_size"],
            m["max_entries"],
            m["name"],
        )
        for m in manifest["maps"]
    }
    attachments = []
    for a in manifest["attachments"]:
        att = {k: v for k, v in a.items() if k != "fd_index"}
        att["fd"] = fds[a["fd_index"]]
        attachments.append(att)
    return LoadedProgram(program, maps, attachments)
