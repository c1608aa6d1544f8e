"""Ground truth without frame pointers through the real collector: cpu receiver with
``unwind: auto`` (tables), the symbolize processor, the folded exporter.

unwind_callers (three callers of one leaf, 50/30/20 % of its CPU time by CPU-time deadlines,
printed) and unwind_qsort (a callback called from inside libc's qsort) are built
``gcc -O2 -g -fomit-frame-pointer``; with frame pointers only, 0 % of their samples reach main.
Each workload prints "ready" and waits for a line, so its first samples come after it runs.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.support.collector_run import start_collector
from tests.support.pipelines import profiles_yaml
from tests.support.workloads import build

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

O2 = ("-O2", "-fomit-frame-pointer")  # the last -f wins over the base flags' frame pointers


def _folded(out: Path, comm: str) -> Counter[str]:
    lines: Counter[str] = Counter()
    for f in out.glob("*.folded"):
        for line in f.read_text().splitlines():
            stack, count = line.rsplit(" ", 1)
            if stack.split(";", 1)[0] == comm:
                lines[stack] += int(count)
    return lines


def _run(tmp: Path, unwind: str, name: str, seconds: str) -> tuple[Counter[str], str, str]:
    binary = build(name, O2)
    out = tmp / f"profiles-{unwind}-{name}"
    cfg = tmp / f"{unwind}-{name}.yaml"
    cpu = {"frequency": 199, "comm": "^unwind_", "unwind": unwind}
    cfg.write_text(profiles_yaml(out, {"cpu": cpu}))
    col = start_collector(cfg)
    try:
        proc = subprocess.Popen(
            [str(binary), seconds], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.close()
        output = proc.stdout.read()
        assert proc.wait() == 0
    finally:
        rc = col.stop()
    assert rc == 0, col.logs()
    return _folded(out, name[:15]), output, col.logs()


def test_three_callers_reach_main_with_their_shares(tmp_path: Path) -> None:
    folded, output, logs = _run(tmp_path, "auto", "unwind_callers", "4")
    total = sum(folded.values())
    assert total >= 300, (total, logs)
    in_main = sum(n for s, n in folded.items() if ";main;" in s or s.endswith(";main"))
    assert in_main >= 0.90 * total, (in_main, total, folded.most_common(8))
    per_caller: Counter[str] = Counter()
    for stack, n in folded.items():
        m = re.search(r";main;(caller_[abc]);hot$", stack)
        if m:
            per_caller[m.group(1)] += n
    truth = {k: int(v) for k, v in re.findall(r"(\w)_ns=(\d+)", output)}
    t_total = sum(truth.values())
    c_total = sum(per_caller.values())
    assert c_total >= 0.85 * total, (per_caller, total)
    for c in "abc":
        got = 100.0 * per_caller[f"caller_{c}"] / c_total
        want = 100.0 * truth[c] / t_total
        assert abs(got - want) <= 5.0, (c, got, want, per_caller)


def test_qsort_callback_shows_the_function_that_called_qsort(tmp_path: Path) -> None:
    folded, _output, logs = _run(tmp_path, "auto", "unwind_qsort", "3")
    in_compare = {s: n for s, n in folded.items() if s.endswith(";compare")}
    n_compare = sum(in_compare.values())
    assert n_compare >= 100, (n_compare, folded.most_common(5), logs)
    with_caller = sum(n for s, n in in_compare.items() if ";sort_batch;" in s)
    assert with_caller >= 0.85 * n_compare, (with_caller, n_compare, folded.most_common(5))


def test_frame_pointers_setting_keeps_the_kernel_walker(tmp_path: Path) -> None:
    """The baseline the tables are for: the same -O2 binary, frame pointers only."""
    folded, _output, logs = _run(tmp_path, "frame_pointers", "unwind_callers", "2")
    total = sum(folded.values())
    assert total >= 100, (total, logs)
    in_main = sum(n for s, n in folded.items() if ";main;" in s)
    assert in_main <= 0.1 * total, folded.most_common(5)


def test_a_library_loaded_with_dlopen_is_unwound_through(tmp_path: Path) -> None:
    """The process is loaded into the unwinder at its first samples (in warm_up), before the
    dlopen; the walks that then stop at the new library (no_mapping) reload it, so the
    library's samples show the program's caller and main again after a moment."""
    lib = build("unwind_dlopen_lib", (*O2, "-shared", "-fPIC"))
    binary = build("unwind_dlopen", O2)
    out = tmp_path / "profiles"
    cfg = tmp_path / "dlopen.yaml"
    cpu = {"frequency": 199, "comm": "^unwind_dlopen$", "unwind": "auto"}
    cfg.write_text(profiles_yaml(out, {"cpu": cpu}))
    col = start_collector(cfg)
    try:
        proc = subprocess.Popen(
            [str(binary), "3", str(lib)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.close()
        assert proc.stdout.read().split() == ["loaded", "done"]
        assert proc.wait() == 0
    finally:
        rc = col.stop()
    assert rc == 0, col.logs()
    folded = _folded(out, "unwind_dlopen")
    in_lib = {s: n for s, n in folded.items() if s.endswith(";lib_leaf")}
    n_lib = sum(in_lib.values())
    assert n_lib >= 300, (n_lib, folded.most_common(5), col.logs())
    whole = sum(n for s, n in in_lib.items() if ";main;call_library;lib_spin" in s)
    print(f"dlopen: {whole} of {n_lib} samples in the library reach main")
    # 3 s at 199 Hz: the first walks after the dlopen stop (a reload waits 20-40 ms for the
    # library to finish mapping, then its table is built); everything after reaches main.
    assert whole >= 0.90 * n_lib, (whole, n_lib, sorted(in_lib.items(), key=lambda kv: -kv[1])[:5])
