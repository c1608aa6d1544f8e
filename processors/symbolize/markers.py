"""Frames that are not code: missing stacks and where (and why) a stack was cut short."""

from __future__ import annotations

from collector.model import FRAME_KERNEL, FRAME_NATIVE, Function, Line, Location
from collector.model.raw import UNWIND_STOP_NAMES


def marker(name: str, frame_type: str) -> Location:
    return Location(None, 0, (Line(Function(name, name)),), frame_type)


MISSING_USER = marker("[missing user stack]", FRAME_NATIVE)
MISSING_KERNEL = marker("[missing kernel stack]", FRAME_KERNEL)
# A caller address outside every mapping of a known process: the frame-pointer chain left
# real code (usually a function built without frame pointers). What follows is stack noise,
# which would make each sample's stack unique, so the stack ends with this marker.
TRUNCATED = marker("[stack truncated: no frame pointer]", FRAME_NATIVE)
# One user frame that is not a thread's or program's first function: the unwinder stopped
# right after the leaf (a binary built without frame pointers and without a table), so the
# rest of the stack is unknown. Never passed off as a whole stack.
LONE_LEAF = marker("[stack truncated: lone leaf]", FRAME_NATIVE)
# Why a stack ends early -> the counter its samples are counted under (besides
# stack_truncated), counted once per sample, not once per distinct stack.
TRUNCATION_COUNTERS = {
    id(TRUNCATED): "stack_truncated_no_frame_pointer",
    id(LONE_LEAF): "stack_truncated_lone_leaf",
}
# The table unwinder's stop sentinels (collector/model/raw.py: the last "address" of a walk
# that ended early, with its reason) -> one marker frame each, counted the same way.
STOP_MARKERS: dict[int, Location] = {
    sentinel: marker(f"[unwind stopped: {name}]", FRAME_NATIVE)
    for sentinel, name in UNWIND_STOP_NAMES.items()
}
for _sentinel, _loc in STOP_MARKERS.items():
    TRUNCATION_COUNTERS[id(_loc)] = f"stack_truncated_{UNWIND_STOP_NAMES[_sentinel]}"
# Functions a stack legitimately ends in (the outermost frame of a program or a thread).
OUTERMOST = frozenset(
    {
        "_start",
        "__libc_start_main",
        "__libc_start_call_main",
        "_dl_start_user",
        "_dl_start",
        "clone",
        "clone3",
        "__clone",
        "__clone3",
        "__clone_internal",
        "start_thread",
        "thread_start",
        "runtime.goexit",
        "runtime.goexit.abi0",
        "runtime.rt0_go",
        "runtime.rt0_go.abi0",
        "runtime.mstart",
        "runtime.mstart.abi0",
    }
)


def is_lone_leaf(loc: Location) -> bool:
    """The only frame of a known process's user stack, and not an outermost function."""
    if loc is MISSING_USER:
        return False
    return not any(
        line.function.system_name in OUTERMOST or line.function.name in OUTERMOST
        for line in loc.lines
    )
