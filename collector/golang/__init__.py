"""What the go_runtime receiver needs to know about a Go binary before probing it: its Go
version, the bounds of the runtime functions it probes (collector.gosym, so stripped builds
too), and where those functions return (RET instructions, found by disassembly: never a
uretprobe on Go code)."""

from collector.golang.binary import (
    NotGo,
    ProbedBinary,
    ProbeFunction,
    UnsupportedGo,
    read_go_binary,
)
from collector.golang.rets import Returns, frame_push, ret_addresses

__all__ = [
    "NotGo",
    "ProbeFunction",
    "ProbedBinary",
    "Returns",
    "UnsupportedGo",
    "frame_push",
    "read_go_binary",
    "ret_addresses",
]
