"""``collector pgo``: a profile for Go's profile-guided optimisation from the collector's
CPU profiles (merge.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.pgo.merge import PgoError, PgoReport, build_pgo

__all__ = ["PgoError", "PgoReport", "build_pgo"]


def __getattr__(name: str) -> Any:
    # merge.py pulls in protobuf (about 5 MB resident); the CLI registers the ``pgo``
    # subcommand on every run, so the package loads it only when the command runs.
    if name in __all__:
        from collector.pgo import merge

        return getattr(merge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
