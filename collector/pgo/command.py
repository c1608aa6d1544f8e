"""The ``collector pgo`` subcommand: arguments and the summary it prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "pgo",
        help="merge the CPU profiles of one binary into a profile for `go build -pgo`",
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="DIR",
        help="directory of pprof files (*.pb.gz) the pprof exporter wrote",
    )
    p.add_argument(
        "--binary",
        required=True,
        metavar="PATH",
        help="the profiled executable (matched by build id, else by path)",
    )
    p.add_argument(
        "-o",
        "--output",
        default="default.pgo",
        metavar="FILE",
        help="where to write the profile (default.pgo: go build picks it up "
        "from the main package's directory)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the profile; PgoError (exit 2) when there is nothing to write."""
    from collector.pgo.merge import build_pgo  # protobuf only when the command runs

    r = build_pgo(Path(args.source), Path(args.binary), Path(args.output))
    for path, why in list(r.skipped.items())[:20]:
        print(f"collector pgo: skipped {path}: {why}", file=sys.stderr)
    print(
        f"collector pgo: wrote {args.output}: {r.samples_kept} samples in {r.stacks} stacks "
        f"from {r.files} CPU profiles (matched by {r.matched_by}); "
        f"{r.samples_dropped} samples of other binaries, {r.frames_dropped} frames outside "
        f"the binary dropped; {len(r.skipped)} unreadable and {r.not_cpu} non-CPU files "
        f"passed over; {r.functions_with_start_line}/{r.functions} functions with start_line",
        file=sys.stderr,
    )
    if r.functions and not r.functions_with_start_line:
        print(
            "collector pgo: warning: no function has a start_line (a Go binary older than "
            "1.20, or not Go): go build -pgo will refuse this profile",
            file=sys.stderr,
        )
    return 0
