"""What receivers emit: raw samples with addresses, before any symbolization."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ProfileType:
    """The sample and period types a backend keys on (pprof/OTLP ValueType strings)."""

    name: str  # short name used for file names and the pyroscope __name__ ("cpu", "off_cpu")
    sample_type: str  # e.g. "samples"
    sample_unit: str  # e.g. "count"
    period_type: str = ""  # e.g. "cpu"
    period_unit: str = ""  # e.g. "nanoseconds"
    period: int = 0
    # Free-form notes carried into output metadata (pprof comments, OTLP attributes),
    # e.g. "values scaled by 1/sample_ratio".
    notes: tuple[str, ...] = ()
    # Further (type, unit) values of every sample, after (sample_type, sample_unit): a heap
    # sample carries alloc_objects, alloc_space, inuse_objects and inuse_space at once.
    extra_values: tuple[tuple[str, str], ...] = ()
    # The value type tools show first (pprof default_sample_type); "" means the first one.
    default_sample_type: str = ""

    @property
    def value_types(self) -> tuple[tuple[str, str], ...]:
        """Every value type of a sample, in order: the first, then ``extra_values``."""
        return ((self.sample_type, self.sample_unit), *self.extra_values)

    @property
    def default_value_type(self) -> tuple[str, str]:
        """The (type, unit) tools show first."""
        return self.value_types[self.default_index]

    @property
    def default_index(self) -> int:
        """Which of ``value_types`` is the default (0 unless default_sample_type names another)."""
        for i, (t, _) in enumerate(self.value_types):
            if t == self.default_sample_type:
                return i
        return 0


def cpu_profile_type(frequency_hz: int) -> ProfileType:
    return ProfileType(
        name="cpu",
        sample_type="samples",
        sample_unit="count",
        period_type="cpu",
        period_unit="nanoseconds",
        period=1_000_000_000 // max(frequency_hz, 1),
    )


# Marker addresses standing in for a stack the kernel could not give us. Symbolizers turn them
# into frames named like bcc's "[Missed User Stack]" so lost stacks stay visible, never dropped.
MISSING_USER_STACK = -1
MISSING_KERNEL_STACK = -2
# The last user frame of a stack unwound from tables (bpf/unwind.h) that stopped before its
# outermost frame: UNWIND_STOP_BASE - reason, with the reason codes of UNWIND_REASONS. The
# symbolizer shows it as "[unwind stopped: <name>]"; a whole stack ("end") carries none.
UNWIND_STOP_BASE = -16
# Why a table walk ended, by the reason code bpf/unwind.h reports (collector.unwind uses the
# same tuple); 0, "end", is a whole stack.
UNWIND_REASONS: tuple[str, ...] = (
    "end",
    "no_process",
    "no_mapping",
    "no_row",
    "table_stop",
    "plt",
    "signal_frame",
    "bad_cfa",
    "read_fault",
    "depth_limit",
    "frame_pointer_end",
    "no_user_regs",
)
UNWIND_STOP_NAMES: dict[int, str] = {
    UNWIND_STOP_BASE - reason: name for reason, name in enumerate(UNWIND_REASONS) if reason
}


def unwind_stop_sentinel(reason: int) -> int:
    """The marker address for a walk that ended for ``reason`` (not 0, "end")."""
    return UNWIND_STOP_BASE - reason


@dataclass(slots=True)
class RawSample:
    """One observation. Addresses are leaf first.

    ``time_ns`` is wall-clock Unix nanoseconds. ``value`` is in the batch's profile type's
    unit (1 per CPU sample, nanoseconds for off-CPU); ``more`` holds the values of the type's
    ``extra_values``, in order (missing trailing ones count as 0). The stack tuples are shared
    between samples with the same stack (receivers cache them), so they cost nothing per sample.
    """

    pid: int
    tid: int
    cpu: int
    comm: str
    time_ns: int
    value: int
    user_stack: tuple[int, ...] = ()
    kernel_stack: tuple[int, ...] = ()
    # Optional span context (16-byte trace id, 8-byte span id) when known.
    trace_id: bytes = b""
    span_id: bytes = b""
    more: tuple[int, ...] = ()


@dataclass(slots=True)
class RawBatch:
    """A batch of raw samples of one profile type, from one receiver."""

    profile_type: ProfileType
    samples: list[RawSample]
    receiver_id: str = ""
    # Receiver-side counters since the previous batch (e.g. {"stack_missing_user": 3}).
    counters: dict[str, int] = field(default_factory=dict)
    # The batch completes a window the receiver cut itself (a heap window's in-use snapshot,
    # the live goroutines): the pipeline closes its type's window right after it, so no
    # window ever holds two snapshots (their values would be summed).
    window_end: bool = False
