"""``collector pgo``: one CPU profile of one binary, from the pprof windows the collector wrote,
in the form ``go build -pgo`` reads.

Each ``*.pb.gz`` (or ``.pb``/``.pprof``) file under the directory is decoded with protobuf;
files that are not CPU profiles (no ``cpu/nanoseconds`` value) are passed over, unreadable
ones are counted and named. Of each sample only the frames of the target binary stay (matched
by build id when both sides have one, else by path), a sample with none is dropped, and equal
stacks are summed. The output has Go's own CPU sample types (samples/count, cpu/nanoseconds),
every function with its ``start_line`` (PGO keys call sites by line offset from it), one
mapping for the binary, no labels.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from collector.elf import ElfError, ElfReader
from collector.errors import ConfigError
from collector.pgo.profile_pb import profile_class

SUFFIXES = (".pb.gz", ".pb", ".pprof", ".pprof.gz")
MAX_FILE_BYTES = 256 << 20  # one window's file; larger ones are skipped and counted
MAX_DECODED_BYTES = 1 << 30  # what one file may inflate to


class PgoError(ConfigError):
    """Nothing usable: no such binary or directory, or no CPU sample of the binary (exit 2)."""


@dataclass
class PgoReport:
    files: int = 0  # CPU profiles read
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why
    not_cpu: int = 0  # profiles of another type (off-CPU, heap, ...)
    samples_kept: int = 0
    samples_dropped: int = 0  # no frame of the binary
    frames_dropped: int = 0  # frames of other mappings (libc, kernel) in kept samples
    functions: int = 0
    functions_with_start_line: int = 0
    stacks: int = 0
    matched_by: str = ""  # "build id" or "path"


def _section_gnu_id(elf: ElfReader) -> str:
    """The GNU build id from its section: the Go linker writes that note outside PT_NOTE, so
    ElfReader.build_id() gives the Go id while Go's own profiles carry the GNU one."""
    sec = elf.section(".note.gnu.build-id")
    if sec is None:
        return ""
    data = elf.section_data(sec, 256)
    if len(data) < 16:
        return ""
    namesz, descsz, ntype = struct.unpack_from(elf.endian + "III", data)
    at = 12 + ((namesz + 3) & ~3)
    if ntype != 3 or data[12 : 12 + namesz].rstrip(b"\0") != b"GNU" or at + descsz > len(data):
        return ""
    return data[at : at + descsz].hex()


def binary_identity(path: Path) -> tuple[frozenset[str], str]:
    """(build ids, real path) of the target binary: the one the collector labels it with
    (GNU, else Go) and the GNU one from the section, which Go's runtime/pprof writes."""
    real = os.path.realpath(path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PgoError(f"cannot open --binary {path}: {e.strerror}") from e
    try:
        elf = ElfReader(fd)
        ids = {elf.build_id(), _section_gnu_id(elf)} - {""}
        return frozenset(ids), real
    except ElfError as e:
        raise PgoError(f"--binary {path} is not a readable ELF file: {e}") from e
    finally:
        os.close(fd)


def _read(path: Path) -> Any:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{size} bytes (more than {MAX_FILE_BYTES})")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            data = gz.read(MAX_DECODED_BYTES + 1)
        if len(data) > MAX_DECODED_BYTES:
            raise ValueError(f"inflates past {MAX_DECODED_BYTES} bytes")
    p = profile_class()()
    p.ParseFromString(data)
    return p


class _Out:
    """The merged profile being built: interned strings, functions, locations, stacks."""

    def __init__(self) -> None:
        self.p = profile_class()()
        self.strings: dict[str, int] = {"": 0}
        self.p.string_table.append("")
        self.functions: dict[tuple[str, str, str, int], int] = {}
        self.locations: dict[tuple[int, tuple[tuple[int, int], ...]], int] = {}
        self.stacks: dict[tuple[int, ...], list[int]] = {}
        self.mapping: Any = None

    def s(self, text: str) -> int:
        i = self.strings.get(text)
        if i is None:
            i = self.strings[text] = len(self.p.string_table)
            self.p.string_table.append(text)
        return i

    def function(self, key: tuple[str, str, str, int]) -> int:
        fid = self.functions.get(key)
        if fid is None:
            fid = self.functions[key] = len(self.functions) + 1
            f = self.p.function.add(id=fid, name=self.s(key[0]), system_name=self.s(key[1]))
            f.filename, f.start_line = self.s(key[2]), key[3]
        return fid

    def location(self, offset: int, lines: tuple[tuple[int, int], ...]) -> int:
        key = (offset, lines)
        lid = self.locations.get(key)
        if lid is None:
            lid = self.locations[key] = len(self.locations) + 1
            loc = self.p.location.add(
                id=lid, mapping_id=1, address=self.mapping.memory_start + offset
            )
            for fid, line in lines:
                loc.line.add(function_id=fid, line=line)
        return lid


def _value_index(p: Any, want: tuple[str, str]) -> int:
    st = p.string_table
    for i, vt in enumerate(p.sample_type):
        if 0 <= vt.type < len(st) and 0 <= vt.unit < len(st) and (st[vt.type], st[vt.unit]) == want:
            return i
    return -1


def _merge_one(p: Any, out: _Out, ids: frozenset[str], real: str, report: PgoReport) -> None:
    st = p.string_table

    def text(i: int) -> str:
        return st[i] if 0 <= i < len(st) else ""

    cpu_i = _value_index(p, ("cpu", "nanoseconds"))
    count_i = _value_index(p, ("samples", "count"))
    period = p.period if p.period > 0 else 0
    ours: dict[int, Any] = {}
    for m in p.mapping:
        mid, mpath = text(m.build_id), text(m.filename)
        if ids and mid:  # another build at the same path is not this binary
            hit = mid in ids
        else:
            hit = os.path.realpath(mpath) == real if mpath.startswith("/") else False
        if hit:
            ours[m.id] = m
            report.matched_by = report.matched_by or ("build id" if ids and mid else "path")
    if not ours:
        report.samples_dropped += len(p.sample)
        return
    if out.mapping is None:
        first = next(iter(ours.values()))
        out.mapping = out.p.mapping.add(
            id=1,
            memory_start=first.memory_start,
            memory_limit=first.memory_limit,
            file_offset=first.file_offset,
            filename=out.s(real),
            build_id=out.s(text(first.build_id)),
            has_functions=True,
            has_filenames=True,
            has_line_numbers=True,
            has_inline_frames=True,
        )
    funcs = {f.id: f for f in p.function}
    locs: dict[int, int | None] = {}  # input location id -> output id (None: not ours)
    for loc in p.location:
        m = ours.get(loc.mapping_id)
        if m is None:
            locs[loc.id] = None
            continue
        lines = []
        for ln in loc.line:
            f = funcs.get(ln.function_id)
            if f is None:
                continue
            key = (text(f.name), text(f.system_name), text(f.filename), f.start_line)
            lines.append((out.function(key), ln.line))
        # Addresses as file offsets, so windows of one PIE binary at other bases coincide.
        offset = loc.address - m.memory_start + m.file_offset - out.mapping.file_offset
        locs[loc.id] = out.location(offset, tuple(lines))
    for sample in p.sample:
        v = sample.value
        cpu = v[cpu_i] if 0 <= cpu_i < len(v) else 0
        count = v[count_i] if 0 <= count_i < len(v) else (cpu // period if period else 0)
        if not cpu and period:
            cpu = count * period
        stack = []
        for lid in sample.location_id:
            o = locs.get(lid)
            if o is None:
                report.frames_dropped += 1
            else:
                stack.append(o)
        if not stack or (count <= 0 and cpu <= 0):
            report.samples_dropped += 1
            continue
        report.samples_kept += max(count, 1)
        acc = out.stacks.setdefault(tuple(stack), [0, 0])
        acc[0] += count
        acc[1] += cpu
    if period and not out.p.period:
        out.p.period = period
    out.p.duration_nanos += max(p.duration_nanos, 0)
    if p.time_nanos and (not out.p.time_nanos or p.time_nanos < out.p.time_nanos):
        out.p.time_nanos = p.time_nanos


def files_under(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise PgoError(f"--from {directory} is not a directory")
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def build_pgo(directory: Path, binary: Path, output: Path) -> PgoReport:
    """Merge the CPU samples of ``binary`` from the pprof files under ``directory`` into
    ``output`` (gzip pprof). PgoError when there is nothing to write."""
    ids, real = binary_identity(binary)
    report = PgoReport()
    out = _Out()
    for path in files_under(directory):
        try:
            p = _read(path)
        except (OSError, ValueError, DecodeError, EOFError, gzip.BadGzipFile) as e:
            report.skipped[str(path)] = str(e) or type(e).__name__
            continue
        if _value_index(p, ("cpu", "nanoseconds")) < 0:
            report.not_cpu += 1
            continue
        report.files += 1
        _merge_one(p, out, ids, real, report)
    if not out.stacks:
        raise PgoError(
            f"no CPU samples of {real} (build id {', '.join(sorted(ids)) or 'none'}) in "
            f"{report.files} CPU profile(s) under {directory} ({len(report.skipped)} "
            f"unreadable, {report.not_cpu} of other types)"
        )
    p = out.p
    for t, u in (("samples", "count"), ("cpu", "nanoseconds")):
        p.sample_type.add(type=out.s(t), unit=out.s(u))
    p.period_type.type, p.period_type.unit = out.s("cpu"), out.s("nanoseconds")
    for stack, (count, cpu) in out.stacks.items():
        p.sample.add(location_id=stack, value=[count, cpu])
    report.stacks = len(out.stacks)
    report.functions = len(out.functions)
    report.functions_with_start_line = sum(1 for k in out.functions if k[3] > 0)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.write_bytes(gzip.compress(p.SerializeToString(), mtime=0))
    os.replace(tmp, output)
    return report
