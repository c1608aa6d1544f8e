"""Which capabilities preflight asks for, per kernel, and the one line it refuses with.

The capability sets are bit masks as /proc/self/status shows them; the real-process run with
exactly these capabilities is tests/deploy/test_capabilities.py.
"""

from __future__ import annotations

import pytest

from collector import preflight as pf
from collector.errors import EnvironmentProblem


def mask(*caps: int) -> int:
    out = 0
    for c in caps:
        out |= 1 << c
    return out


DOCUMENTED = mask(
    pf.CAP_BPF, pf.CAP_PERFMON, pf.CAP_SYS_PTRACE, pf.CAP_CHECKPOINT_RESTORE, pf.CAP_DAC_READ_SEARCH
)


def names(kernel: tuple[int, int], optional: bool = False) -> list[str]:
    return [n.name for n in pf.capability_needs(kernel) if n.optional == optional]


def test_needs_per_kernel() -> None:
    modern = ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_CHECKPOINT_RESTORE"]
    assert names((6, 18)) == [*modern, "CAP_DAC_READ_SEARCH"]
    assert names((5, 10)) == [*modern, "CAP_DAC_READ_SEARCH", "CAP_SYS_RESOURCE"]
    assert names((5, 8)) == [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_PTRACE",
        "CAP_SYS_ADMIN",
        "CAP_DAC_READ_SEARCH",
        "CAP_SYS_RESOURCE",
    ]
    assert names((5, 4)) == [
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_DAC_READ_SEARCH",
        "CAP_SYS_RESOURCE",
    ]
    assert names((6, 18), optional=True) == ["CAP_SYSLOG"]
    assert pf.kernel_version("6.18.0-rc3+") == (6, 18) and pf.kernel_version("x") == (0, 0)


def test_the_documented_set_is_enough_on_this_kernel_generation() -> None:
    line = pf.check_capabilities(DOCUMENTED, (6, 18))
    assert "have=CAP_DAC_READ_SEARCH,CAP_SYS_PTRACE,CAP_PERFMON,CAP_BPF" in line
    assert "missing_optional=CAP_SYSLOG" in line and "kallsyms" in line
    line = pf.check_capabilities(DOCUMENTED | mask(pf.CAP_SYSLOG), (6, 18))
    assert "missing_optional" not in line


def test_every_missing_one_is_named_in_one_line() -> None:
    with pytest.raises(EnvironmentProblem) as err:
        pf.check_capabilities(mask(pf.CAP_BPF, pf.CAP_PERFMON), (6, 18))
    msg = str(err.value)
    assert "\n" not in msg and err.value.exit_code == 3
    assert "needs root" in msg and "deploy/README.md" in msg
    for name in ("CAP_SYS_PTRACE", "CAP_CHECKPOINT_RESTORE", "CAP_DAC_READ_SEARCH"):
        assert name in msg
    assert "CAP_BPF" not in msg and "CAP_SYSLOG" not in msg


def test_broader_capabilities_stand_in() -> None:
    # CAP_SYS_ADMIN still grants BPF, perf and map_files; CAP_DAC_OVERRIDE grants search.
    broad = mask(pf.CAP_SYS_ADMIN, pf.CAP_SYS_PTRACE, pf.CAP_DAC_OVERRIDE)
    assert "have=" in pf.check_capabilities(broad, (6, 18))
    with pytest.raises(EnvironmentProblem, match="CAP_SYS_RESOURCE"):
        pf.check_capabilities(broad, (5, 10))  # memlock still counted then


def test_this_process() -> None:
    # The tests run as root: everything there, and the line says so.
    if not pf.capability_needs()[0].met(pf._effective_caps()):
        pytest.skip("not running with BPF capabilities")
    assert pf.check_capabilities().startswith("capabilities have=")
