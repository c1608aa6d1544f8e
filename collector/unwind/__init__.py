"""Unwinding user stacks without frame pointers: per-binary tables from .eh_frame (built with
symbolic), loaded into the maps of bpf/unwind.h, shared by every process that maps a binary.
See README.md."""

from collector.unwind.breakpad import CfiError, CfiStats, Rows, build_rows
from collector.unwind.maps import Entry, UnwindMaps
from collector.unwind.store import SliceAllocator, TableStore
from collector.unwind.table import TableError, UnwindTable, binary_key, build_table

__all__ = [
    "CfiError",
    "CfiStats",
    "Entry",
    "Rows",
    "SliceAllocator",
    "TableError",
    "TableStore",
    "UnwindMaps",
    "UnwindTable",
    "binary_key",
    "build_rows",
    "build_table",
]
