from __future__ import annotations

from collector.encoding import encode_folded, folded_totals
from collector.model import Function, Line, Location, Mapping, ProcessInfo, ProfileBuilder, Stack
from collector.model.symbolized import Sample
from tests.support.encoding_samples import CPU, EXPECTED_FOLDED, OFF_CPU, profile_set


def test_folded_matches_hand_written_ground_truth() -> None:
    text = encode_folded(profile_set()).decode()
    expected = "".join(f"{k} {v}\n" for k, v in sorted(EXPECTED_FOLDED.items()))
    assert text == expected


def test_identical_names_from_different_addresses_merge_into_one_line() -> None:
    totals = folded_totals(profile_set())
    # 5 samples at work+0x10 and 3 at work+0x20 render the same names.
    assert totals["app;main;work;compute;square"] == 8
    assert len(totals) == len(set(totals))


def test_off_cpu_values_are_the_nanoseconds() -> None:
    totals = folded_totals(profile_set(OFF_CPU, value=1_500))
    assert totals == {k: v * 1_500 for k, v in EXPECTED_FOLDED.items()}


def test_each_line_is_root_frames_space_count() -> None:
    for line in encode_folded(profile_set(scale=3)).decode().splitlines():
        stack, count = line.rsplit(" ", 1)
        assert int(count) > 0
        assert all(stack.split(";"))


def test_separators_inside_names_cannot_split_frames() -> None:
    m = Mapping(0x1000, 0x2000, 0, "/bin/x")
    f = Function("operator;weird\nname")
    stack = Stack((Location(m, 0x1100, (Line(f),)),))
    b = ProfileBuilder(CPU)
    b.add(Sample(stack, ProcessInfo(7, "x;y"), 7, 0, "x", 1, 1))
    assert encode_folded(b.build()) == b"x:y;operator:weird name 1\n"


def test_empty_stack_is_the_process_alone() -> None:
    b = ProfileBuilder(CPU)
    b.add(Sample(Stack(()), ProcessInfo(0, "swapper/0"), 0, 0, "swapper/0", 1, 1))
    assert encode_folded(b.build()) == b"swapper/0 1\n"
