"""Symbolized frames: the value objects every encoder shares.

Instances are interned by whoever creates them (the symbolizer caches them per binary and
address), and each one stores its hash, so building tables keys dicts by them at the cost of
one identity check per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FRAME_KERNEL = "kernel"
FRAME_NATIVE = "native"
FRAME_GO = "go"


@dataclass(frozen=True, slots=True, eq=True)
class Mapping:
    """A mapped file (or the kernel). Addresses of locations are relative to the process."""

    start: int
    limit: int
    offset: int
    filename: str
    build_id: str = ""  # hex GNU build id, or the Go build id
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (self.start, self.limit, self.offset, self.filename, self.build_id)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True, eq=True)
class Function:
    name: str  # demangled
    system_name: str = ""  # mangled, as in the symbol table
    filename: str = ""
    start_line: int = 0
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (self.name, self.system_name, self.filename, self.start_line)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True, eq=True)
class Line:
    function: Function
    line: int = 0
    column: int = 0
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.function, self.line, self.column)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True, eq=True)
class Location:
    """One frame. ``lines`` lists inlined functions first and the caller last (OTLP order).

    An unresolved frame has no lines; encoders show it as ``module+0xoffset``.
    ``address`` is the process virtual address (kernel address for kernel frames).
    """

    mapping: Mapping | None
    address: int
    lines: tuple[Line, ...] = ()
    frame_type: str = FRAME_NATIVE
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.mapping, self.address, self.lines)))

    def __hash__(self) -> int:
        return self._hash

    def label(self) -> str:
        """The frame name as folded output shows it: the outermost function of the frame."""
        if self.lines:
            return self.lines[-1].function.name
        if self.mapping is not None:
            base = self.mapping.filename.rsplit("/", 1)[-1] or "[unknown]"
            return f"{base}+{self.address - self.mapping.start + self.mapping.offset:#x}"
        return f"[unknown {self.address:#x}]"

    def names(self) -> list[str]:
        """Every function name in this frame, caller first (inlined frames expanded)."""
        if not self.lines:
            return [self.label()]
        return [ln.function.name for ln in reversed(self.lines)]


@dataclass(frozen=True, slots=True, eq=True)
class Stack:
    frames: tuple[Location, ...]  # leaf first
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(self.frames))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True, eq=True)
class ProcessInfo:
    """What a resource needs to say about a process; interned per process lifetime."""

    pid: int
    executable_name: str = ""
    executable_path: str = ""
    build_id: str = ""
    container_id: str = ""
    start_time: int = 0  # clock ticks since boot, from /proc/<pid>/stat; tells reused pids apart
    # The pid inside the process's own PID namespace when it runs in one below the
    # collector's (a container seen from the host); 0 when it is the same as ``pid``.
    pid_namespaced: int = 0
    # More resource attributes (key, value), sorted by key, that processors add (k8s.pod.name,
    # ...). A tuple so the whole ProcessInfo stays hashable and interned.
    attributes: tuple[tuple[str, str], ...] = ()
    # Stored like the frames' hashes: every sample's record key includes its process.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (
            self.pid,
            self.executable_name,
            self.executable_path,
            self.build_id,
            self.container_id,
            self.start_time,
            self.pid_namespaced,
            self.attributes,
        )
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash
