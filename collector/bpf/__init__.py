"""BPF plumbing shared by receivers: a loader that keeps bcc out of the collector process,
map access over bpf(2), a ringbuf consumer and a stack trace map reader. See README.md.

The receiver base (stack_receiver, stack_config) is imported from its module, not from here:
the loader child imports this package and stays free of pydantic and the model."""

from collector.bpf.attach import PERF_EVENTS, AttachSpec
from collector.bpf.loader import LoadedProgram, load
from collector.bpf.ringbuf import RingBuffer
from collector.bpf.stacks import StackReader
from collector.bpf.syscall import BpfError, Map, possible_cpus

__all__ = [
    "PERF_EVENTS",
    "AttachSpec",
    "BpfError",
    "LoadedProgram",
    "Map",
    "RingBuffer",
    "StackReader",
    "load",
    "possible_cpus",
]
