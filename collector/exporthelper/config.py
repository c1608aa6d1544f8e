"""Settings every periodic file exporter shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from collector.component import ComponentConfig
from collector.config.duration import Duration, parse_duration
from collector.model import WindowSettings

__all__ = ["Duration", "FileExporterConfig", "FileMode", "dir_mode", "parse_duration"]


def parse_mode(value: object) -> object:
    """An octal string (``"0640"``, ``"640"``, ``"0o640"``) or an int -> permission bits."""
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or any(c not in "01234567" for c in text):
            raise ValueError(f"not an octal file mode: {value!r} (use e.g. '0600', '0640')")
        value = int(text, 8)
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 0o777:
        raise ValueError(
            f"file mode {value} is not within 0o000-0o777 "
            "(write it as a quoted octal string, e.g. '0640')"
        )
    return value


# Permission bits only (no setuid/sticky); umask never changes them (files are chmod'ed).
FileMode = Annotated[int, BeforeValidator(parse_mode)]


def dir_mode(file_mode: int) -> int:
    """The mode of folders the exporter creates: the owner's rwx, the file mode's group and
    other bits, and search (x) for a class that may read or write the files."""
    mode = 0o700 | (file_mode & 0o077)
    if file_mode & 0o070:
        mode |= 0o010
    if file_mode & 0o007:
        mode |= 0o001
    return mode


class FileExporterConfig(ComponentConfig):
    """Where and how often a periodic file exporter writes."""

    directory: Path = Field(description="Folder for the files; created if missing.")
    interval: Duration = Field(default=10.0, gt=0, description="Seconds per file window.")
    max_samples: int = Field(
        default=1_000_000,
        gt=0,
        description="A window of one profile type that reaches this many samples is closed "
        "early (its file is written; nothing is dropped).",
    )
    max_files: int = Field(
        default=0, ge=0, description="Keep at most this many files (oldest deleted); 0 = all."
    )
    file_mode: FileMode = Field(
        default=0o600,
        description="Permissions of written files (octal, e.g. '0640' lets the group read); "
        "folders the exporter creates get the matching mode (0700 for 0600, 0750 for 0640).",
    )

    def window(self) -> WindowSettings:
        """How the pipeline cuts this exporter's windows."""
        return WindowSettings(self.interval, self.max_samples)
