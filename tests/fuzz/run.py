"""Run one fuzz target under atheris (libFuzzer), with the project's code instrumented.

    python -m tests.fuzz.run TARGET [libFuzzer flags] [CORPUS_DIR ...]

e.g. ``-max_total_time=60 -timeout=20 -rss_limit_mb=1024 -artifact_prefix=out/``. A crash
(an exception other than the target's allowed one, a hang past -timeout, or RSS past the limit)
is written to ``<artifact_prefix>crash-*`` (or timeout-*, oom-*) and exits non-zero.
"""

from __future__ import annotations

import sys

import atheris

# Instrument what parses hostile bytes (and pyelftools under it) for coverage feedback.
with atheris.instrument_imports(include=["collector", "processors", "elftools", "tests.fuzz"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer args]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
