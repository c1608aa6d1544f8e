"""Brendan Gregg's collapsed ("folded") stack format from a ProfileSet.

One line per distinct symbolized stack: ``process;caller;...;leaf value``. Lines are merged by
the rendered string because different locations (addresses) can render the same names.
"""

from __future__ import annotations

from collector.model import ProfileSet
from collector.model.profile import ATTR_THREAD_NAME

_UNKNOWN_PROCESS = "[unknown]"


def _clean(name: str) -> str:
    # ';' separates frames and a newline ends the line: neither may appear inside a frame.
    if ";" in name or "\n" in name:
        return name.replace(";", ":").replace("\n", " ")
    return name


def folded_totals(ps: ProfileSet, span_names: bool = False) -> dict[str, int]:
    """Rendered stack -> summed value (sample count for CPU, nanoseconds for off-CPU; the
    default sample type's value of a profile with several).

    ``span_names``: a sample linked to a span (correlate) starts with the span's name, so a
    flame graph groups the code by the request it ran for: ``span;process;caller;...;leaf``.
    """
    d = ps.dictionary
    locations = d.locations
    attributes = d.attributes
    loc_text: dict[int, str] = {}
    stack_text: dict[int, str] = {}
    thread_names: dict[tuple[int, ...], str] = {}
    totals: dict[str, int] = {}
    column = ps.profile_type.default_index  # a heap window folds its inuse_space
    several = bool(ps.profile_type.extra_values)
    for proc in ps.processes:
        exe = _clean(proc.process.executable_name)
        for rec in proc.samples:
            amount = sum(rec.column(column))
            if several and not amount:
                continue  # e.g. an allocation freed within the window: no inuse_space
            root = exe
            if not root:
                attrs = rec.attribute_indices
                root = thread_names.get(attrs)
                if root is None:
                    root = _UNKNOWN_PROCESS
                    for i in attrs:
                        key, value = attributes[i]
                        if key == ATTR_THREAD_NAME and value:
                            root = _clean(str(value))
                    thread_names[attrs] = root
            text = stack_text.get(rec.stack_index)
            if text is None:
                parts = []
                for li in reversed(d.stacks[rec.stack_index]):  # stacks are leaf first
                    lt = loc_text.get(li)
                    if lt is None:
                        lt = loc_text[li] = ";".join(_clean(n) for n in locations[li].names())
                    parts.append(lt)
                text = stack_text[rec.stack_index] = ";".join(parts)
            line = f"{root};{text}" if text else root
            if span_names and rec.link_index:
                name = d.link_names[rec.link_index] if rec.link_index < len(d.link_names) else ""
                line = f"{_clean(name) or '[span]'};{line}"
            totals[line] = totals.get(line, 0) + amount
    return totals


def encode_folded(ps: ProfileSet, span_names: bool = False) -> bytes:
    """The whole window as folded text (UTF-8), lines sorted so output is reproducible."""
    totals = folded_totals(ps, span_names)
    return "".join(f"{k} {v}\n" for k, v in sorted(totals.items())).encode()
