"""offcpu settings: defaults, validation, and how they reach the BPF side (no kernel needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from receivers.offcpu import factory
from receivers.offcpu.config import OffCpuConfig
from receivers.offcpu.receiver import bpf_defines, profile_type


def test_factory_declares_a_raw_bpf_receiver() -> None:
    assert (factory.type, factory.kind, factory.output) == ("offcpu", "receiver", "raw")
    assert factory.needs_bpf and factory.needs_tracefs
    assert factory.config_model is OffCpuConfig


def test_defaults_reach_bpf_as_defines() -> None:
    config = OffCpuConfig()
    d = bpf_defines(config, ncpus=2)
    assert d["STATE_MASK"] == 3  # interruptible + uninterruptible
    assert d["MIN_BLOCK_NS"] == int(config.min_block * 1e9)
    assert d["SAMPLE_THRESHOLD"] == 0  # no static sampling
    assert d["MAX_RATE"] == 2000  # adaptive sampling above 2000 switch-outs/s per CPU
    assert d["FILTER_PIDS"] == 0
    assert d["KERNEL_SKIP"] == 2  # raw tracepoint hook
    assert 1 <= d["WAKE_EVERY"] * 2 * 72 <= config.ringbuf_pages * 4096 // 2


def test_settings_map_to_defines() -> None:
    config = OffCpuConfig.model_validate(
        {
            "states": ["uninterruptible"],
            "min_block": "1ms",
            "max_block": "2s",
            "sample_ratio": 0.25,
            "pids": [42],
            "hook": "tracepoint",
            "max_rate": 0,
        }
    )
    d = bpf_defines(config, ncpus=4)
    assert d["STATE_MASK"] == 2
    assert (d["MIN_BLOCK_NS"], d["MAX_BLOCK_NS"]) == (1_000_000, 2_000_000_000)
    assert d["SAMPLE_THRESHOLD"] == 1 << 30
    assert d["MAX_RATE"] == 0
    assert d["FILTER_PIDS"] == 1
    assert d["KERNEL_SKIP"] == 0


def test_profile_type_is_off_cpu_nanoseconds_with_notes() -> None:
    pt = profile_type(OffCpuConfig(sample_ratio=0.1))
    assert (pt.name, pt.sample_type, pt.sample_unit) == ("off_cpu", "off_cpu", "nanoseconds")
    assert any(
        "scaled by the inverse of each wait's sampling probability "
        "(sample_ratio=0.1, max_rate=2000/s per CPU)" in n
        for n in pt.notes
    )
    assert not any("scaled" in n for n in profile_type(OffCpuConfig(max_rate=0)).notes)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"state": ["interruptible"]}, "Extra inputs are not permitted"),
        ({"states": ["running"]}, "interruptible"),
        ({"states": []}, "at least 1"),
        ({"sample_ratio": 0}, "greater than 0"),
        ({"sample_ratio": 1.5}, "less than or equal to 1"),
        ({"max_rate": -1}, "greater than or equal to 0"),
        ({"max_rate": 1.5}, "valid integer"),
        ({"min_block": "1ms", "max_block": "10us"}, "below min_block"),
        ({"min_block": "soon"}, "not a duration"),
        ({"comm": "("}, "not a valid regular expression"),
        ({"ringbuf_pages": 3}, "power of two"),
        ({"pids": [0]}, "positive"),
    ],
)
def test_bad_settings_are_rejected_with_the_field_named(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OffCpuConfig.model_validate(settings)
