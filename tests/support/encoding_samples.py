"""Realistic symbolized samples for the encoder and file exporter tests.

Kernel + native frames, an inlined function, an unresolved libc frame, two addresses that
render the same names, two processes (one without an executable name), CPU and off-CPU types.
"""

from __future__ import annotations

from collector.model import (
    FRAME_KERNEL,
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    ProfileBuilder,
    ProfileSet,
    ProfileType,
    Sample,
    Stack,
    SymbolizedBatch,
    cpu_profile_type,
)

CPU = cpu_profile_type(99)
# Several values per sample, as the heap receiver writes them.
HEAP = ProfileType(
    "heap",
    "alloc_objects",
    "count",
    extra_values=(("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")),
    default_sample_type="inuse_space",
)
OFF_CPU = ProfileType("off_cpu", "off_cpu", "nanoseconds", notes=("blocked time, not on CPU",))
T0 = 1_763_800_000_000_000_000  # 2025-11-22T08:26:40Z

KERNEL = Mapping(0xFFFFFFFF81000000, 0xFFFFFFFFA0000000, 0, "[kernel.kallsyms]")
APP = Mapping(0x400000, 0x500000, 0, "/usr/bin/app", build_id="0123abcd")
LIBC = Mapping(0x7F0000000000, 0x7F0000200000, 0x28000, "/usr/lib/libc.so.6", "feedbeef")

F_MAIN = Function("main", "main", "app.c", 40)
F_WORK = Function("work", "_Z4workv", "app.c", 20)
F_COMPUTE = Function("compute", "compute", "app.c", 28)
F_SQUARE = Function("square", "square", "app.c", 10)
F_WRITE = Function("write", "__write", "", 0)
K_ENTRY = Function("entry_SYSCALL_64")
K_WRITE = Function("ksys_write")


def _loc(m: Mapping | None, addr: int, *lines: Line, kind: str = "native") -> Location:
    return Location(m, addr, tuple(lines), kind)


L_MAIN = _loc(APP, 0x401100, Line(F_MAIN, 45))
L_WORK_A = _loc(APP, 0x401010, Line(F_WORK, 22))
L_WORK_B = _loc(APP, 0x401020, Line(F_WORK, 23))  # renders like L_WORK_A
# square() inlined into compute(): inlined first, caller last.
L_COMPUTE = _loc(APP, 0x401050, Line(F_SQUARE, 12), Line(F_COMPUTE, 30))
L_WRITE = _loc(LIBC, 0x7F0000001000, Line(F_WRITE))
L_UNRESOLVED = _loc(LIBC, 0x7F0000001234)  # libc.so.6+0x29234
L_KENTRY = _loc(KERNEL, 0xFFFFFFFF81000100, Line(K_ENTRY), kind=FRAME_KERNEL)
L_KWRITE = _loc(KERNEL, 0xFFFFFFFF81000200, Line(K_WRITE), kind=FRAME_KERNEL)

APP_PROC = ProcessInfo(100, "app", "/usr/bin/app")
NAMELESS_PROC = ProcessInfo(200)  # exited before its name was read: root is the comm

# (process, tid, comm, leaf-first frames, count)
STACKS = [
    (APP_PROC, 101, "app", (L_COMPUTE, L_WORK_A, L_MAIN), 5),
    (APP_PROC, 101, "app", (L_COMPUTE, L_WORK_B, L_MAIN), 3),  # same names as above
    (APP_PROC, 102, "app-worker", (L_KWRITE, L_KENTRY, L_WRITE, L_WORK_A, L_MAIN), 4),
    (APP_PROC, 102, "app-worker", (L_UNRESOLVED, L_MAIN), 2),
    (NAMELESS_PROC, 200, "sleeper", (L_WORK_A, L_MAIN), 1),
]

EXPECTED_FOLDED = {
    "app;main;work;compute;square": 8,
    "app;main;work;write;entry_SYSCALL_64;ksys_write": 4,
    "app;main;libc.so.6+0x29234": 2,
    "sleeper;main;work": 1,
}


def samples(scale: int = 1, value: int = 1, t0: int = T0) -> list[Sample]:
    """``scale`` copies of STACKS, each counted sample carrying ``value``."""
    out = []
    n = 0
    for _ in range(scale):
        for proc, tid, comm, frames, count in STACKS:
            stack = Stack(frames)
            for _ in range(count):
                n += 1
                out.append(Sample(stack, proc, tid, n % 2, comm, t0 + n * 1000, value))
    return out


def batch(profile_type: ProfileType = CPU, scale: int = 1, value: int = 1) -> SymbolizedBatch:
    return SymbolizedBatch(profile_type, samples(scale, value))


def profile_set(profile_type: ProfileType = CPU, scale: int = 1, value: int = 1) -> ProfileSet:
    b = ProfileBuilder(profile_type)
    b.add_all(samples(scale, value))
    return b.build()


def heap_sample(stack: Stack, n: int, value: int, more: tuple[int, ...]) -> Sample:
    """A HEAP sample of APP_PROC at T0 + n: alloc_objects ``value``, then ``more``."""
    return Sample(stack, APP_PROC, 101, 0, "app", T0 + n, value, more=more)
