"""The unwind setting reaches the BPF side as UNWIND_TABLES, and bad values are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from collector.bpf.stack_config import StackReceiverConfig
from collector.model.raw import UNWIND_STOP_BASE, UNWIND_STOP_NAMES, unwind_stop_sentinel
from collector.unwind import layout as L


@pytest.mark.parametrize(
    ("unwind", "user_stacks", "tables"),
    [
        ("auto", True, 1),
        ("tables", True, 1),
        ("frame_pointers", True, 0),
        ("auto", False, 0),  # no user stacks: nothing to unwind
    ],
)
def test_unwind_setting_becomes_the_define(unwind: str, user_stacks: bool, tables: int) -> None:
    config = StackReceiverConfig(unwind=unwind, user_stacks=user_stacks)  # type: ignore[arg-type]
    assert config.common_defines(2)["UNWIND_TABLES"] == tables


def test_default_is_auto_and_typos_are_refused() -> None:
    config = StackReceiverConfig()
    assert config.unwind == "auto" and config.tables()
    assert (config.unwind_budget, config.unwind_cache) == (0.1, "/var/cache/collector/unwind")
    with pytest.raises(ValidationError, match="unwind"):
        StackReceiverConfig(unwind="dwarf")  # type: ignore[arg-type]


def test_tables_wake_the_reader_for_fewer_events() -> None:
    """Records carry frames with tables: the buffer holds fewer of them."""
    fp = StackReceiverConfig(unwind="frame_pointers")
    assert StackReceiverConfig(unwind="auto").ringbuf_events() < fp.ringbuf_events()


def test_every_stop_reason_but_end_has_a_named_sentinel() -> None:
    names = {unwind_stop_sentinel(i): n for i, n in enumerate(L.REASONS) if i}
    assert names == UNWIND_STOP_NAMES
    assert all(a < UNWIND_STOP_BASE < 0 for a in names)  # never a real address or -1/-2
