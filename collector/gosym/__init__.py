"""Go symbols without a symbol table: build info and ``.gopclntab`` (functions, file:line,
inlined calls, start lines) for Go 1.16 to 1.27 binaries, stripped or not.

    with GoBinary.open("/usr/local/bin/api") as go:
        go.version                      # "go1.25.5"
        go.function("main.handler")     # (entry, end): a stripped binary's function bounds
        go.frames(pc)                   # [GoFrame(function, file, line, start_line), ...]

Bounded like collector/elf (every read through ElfReader); the one error is ``GoSymError``,
an ``ElfError``.
"""

from collector.gosym.binary import GoBinary, GoFrame, GoFunction
from collector.gosym.buildinfo import BuildInfo, GoSymError, read_build_info, version_tuple

__all__ = [
    "BuildInfo",
    "GoBinary",
    "GoFrame",
    "GoFunction",
    "GoSymError",
    "read_build_info",
    "version_tuple",
]
