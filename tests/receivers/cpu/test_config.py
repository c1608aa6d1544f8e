"""The cpu receiver's settings: defaults in one place and a clear error per mistake."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from receivers.cpu import factory
from receivers.cpu.config import CpuConfig


def test_defaults_and_factory() -> None:
    c = CpuConfig()
    assert (c.frequency, c.event, c.pids, c.comm, c.include_idle) == (
        99,
        "cpu-clock",
        [],
        None,
        False,
    )
    assert (c.kernel_stacks, c.user_stacks, c.stack_map_size, c.ringbuf_pages) == (
        True,
        True,
        16384,
        256,
    )
    assert c.drain_interval == 1.0
    assert CpuConfig(drain_interval="250ms").drain_interval == 0.25
    assert c.optional is False and CpuConfig(optional=True).optional is True
    assert (factory.type, factory.kind, factory.output) == ("cpu", "receiver", "raw")
    assert factory.needs_bpf and factory.needs_tracefs and factory.config_model is CpuConfig


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"frequency": 0}, "frequency"),
        ({"frequency": 10001}, "frequency"),
        ({"event": "instructions"}, "event"),
        ({"comm": "(unclosed"}, "comm"),
        ({"ringbuf_pages": 3}, "ringbuf_pages"),
        ({"pids": [0]}, "pids"),
        ({"drain_interval": 0}, "drain_interval"),
        ({"optional": "maybe"}, "optional"),
        ({"frequncy": 99}, "frequncy"),
    ],
)
def test_mistakes_name_the_field(settings: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        CpuConfig(**settings)
    assert err.value.errors()[0]["loc"] == (field,)
