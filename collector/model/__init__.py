"""The data model shared by every component: raw samples, frames, and the profile tables."""

from collector.model.builder import ProfileBuilder
from collector.model.frames import (
    FRAME_GO,
    FRAME_KERNEL,
    FRAME_NATIVE,
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    Stack,
)
from collector.model.profile import Dictionary, ProcessProfile, ProfileSet, SampleRecord
from collector.model.raw import (
    MISSING_KERNEL_STACK,
    MISSING_USER_STACK,
    ProfileType,
    RawBatch,
    RawSample,
    cpu_profile_type,
)
from collector.model.symbolized import Sample, SymbolizedBatch
from collector.model.windows import ProfileWindows, WindowSettings

__all__ = [
    "FRAME_GO",
    "FRAME_KERNEL",
    "FRAME_NATIVE",
    "MISSING_KERNEL_STACK",
    "MISSING_USER_STACK",
    "Dictionary",
    "Function",
    "Line",
    "Location",
    "Mapping",
    "ProcessInfo",
    "ProcessProfile",
    "ProfileBuilder",
    "ProfileSet",
    "ProfileType",
    "ProfileWindows",
    "RawBatch",
    "RawSample",
    "Sample",
    "SampleRecord",
    "Stack",
    "SymbolizedBatch",
    "WindowSettings",
    "cpu_profile_type",
]
