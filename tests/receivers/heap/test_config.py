"""The heap receiver's settings: one target kind, clear errors, defaults in one place."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from receivers.heap.config import HeapConfig


def test_defaults() -> None:
    c = HeapConfig(pids=[1])
    assert c.mode == "sampled"
    assert c.sample_bytes == 524288
    assert c.min_age == 30.0
    assert c.allocator == "libc.so.6"


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({}, "exactly one of pids"),
        ({"pids": [1], "binary": "/bin/true"}, "exactly one of pids"),
        ({"binary": "true"}, "absolute path"),
        ({"pids": [0]}, "positive"),
        ({"pids": [1], "ringbuf_pages": 3}, "power of two"),
        ({"pids": [1], "sample_byte": 4096}, "sample_byte"),
        ({"pids": [1], "mode": "everything"}, "mode"),
    ],
)
def test_bad_settings_name_the_problem(cfg: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HeapConfig.model_validate(cfg)


def test_min_age_off_and_durations() -> None:
    c = HeapConfig.model_validate({"pids": [1], "min_age": None, "interval": "2m"})
    assert c.min_age is None
    assert c.interval == 120.0
