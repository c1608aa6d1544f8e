"""The READMEs say what the code does: every settings table against its pydantic model.

For each built-in component (found through the entry points, as the collector finds them),
the ``| setting | default | meaning |`` table of its README must name every field of its
config model (a nested model either as a whole, ``tls``, or field by field, ``tls.ca_file``),
every name in the table must be a field, and a documented default that is a literal
(```10s```, ```true```, ```[]```, ``none``, ``required``) must be the model's default. A README
that begins "All settings of the [otlp exporter](../otlp/README.md)" inherits that table.
The root README's sentences about `service` settings are checked against ServiceConfig.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.fields import FieldInfo

from collector.config.duration import Duration
from collector.config.schema import ServiceConfig
from collector.registry import BUILTIN_DIST, GROUPS, Registry

ROOT = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"^\|\s*setting\s*\|\s*default\s*\|", re.IGNORECASE)
INHERIT = re.compile(r"All settings of the \[[^\]]*\]\(([^)\s]*README\.md)\)")
NOT_A_LITERAL = object()


@dataclass(frozen=True)
class Row:
    names: tuple[str, ...]
    default: str  # the default cell as written


def builtin_components() -> list[tuple[str, str, str]]:
    """(kind, type, package) of every component the project itself registers."""
    out = []
    for kind, group in GROUPS.items():
        for ep in entry_points(group=group):
            if ep.dist is not None and ep.dist.name == BUILTIN_DIST:
                out.append((kind, ep.name, ep.module))
    return sorted(out)


def readme_of(package: str) -> Path:
    return Path(importlib.import_module(package).__file__ or "").parent / "README.md"


def table_rows(readme: Path) -> list[Row]:
    rows: list[Row] = []
    in_table = False
    for line in readme.read_text().splitlines():
        if HEADER.match(line):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break  # the first settings table only
        if not in_table or re.match(r"^\|[\s\-:|]+\|$", line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(Row(tuple(re.findall(r"`([^`]+)`", cells[0])), cells[1]))
    return rows


def documented(readme: Path) -> dict[str, Row]:
    """Setting name -> its row, with the rows of an inherited README under the local ones."""
    names: dict[str, Row] = {}
    m = INHERIT.search(readme.read_text())
    if m:
        names.update(documented((readme.parent / m.group(1)).resolve()))
    for row in table_rows(readme):
        for n in row.names:
            names[n] = row
    return names


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``M`` or ``M | None``; None for any other type."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        models = [a for a in get_args(annotation) if a is not type(None)]
        if len(models) == 1:
            return nested_model(models[0])
    return None


def fields(model: type[BaseModel], prefix: str = "") -> dict[str, FieldInfo]:
    """Every field as a dotted path, nested models and their fields both included."""
    out: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        path = prefix + name
        out[path] = info
        sub = nested_model(info.annotation)
        if sub is not None:
            out.update(fields(sub, path + "."))
    return out


def undocumented(path: str, info: FieldInfo, names: dict[str, Row]) -> list[str]:
    """The field, or the parts of a nested model's fields, that the table leaves out."""
    if path in names:
        return []
    sub = nested_model(info.annotation)
    if sub is None:
        return [path]
    missing = [
        m for n, i in sub.model_fields.items() for m in undocumented(f"{path}.{n}", i, names)
    ]
    return [path] if len(missing) == len(fields(sub)) else missing


def model_default(model: type[BaseModel], path: str) -> Any:
    """The default of a dotted field, or ``...`` when it is required."""
    head, _, rest = path.partition(".")
    info = model.model_fields[head]
    if not rest:
        return ... if info.is_required() else info.get_default(call_default_factory=True)
    sub = nested_model(info.annotation)
    assert sub is not None, path
    outer = None if info.is_required() else info.get_default(call_default_factory=True)
    if isinstance(outer, BaseModel):
        return getattr(outer, rest.split(".")[0]) if "." not in rest else model_default(sub, rest)
    return model_default(sub, rest)


def parse_default(cell: str) -> Any:
    """What a default cell promises: a value, ``...`` (required) or NOT_A_LITERAL."""
    code = re.search(r"`([^`]*)`", cell)
    if code:
        text = code.group(1)
        try:
            return yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            return text
    word = cell.split()[0].lower() if cell.split() else ""
    if word == "none":
        return None
    if word == "required":
        return ...
    return NOT_A_LITERAL  # prose, e.g. "executable name"


def as_field_value(info: FieldInfo, value: Any) -> Any:
    """The documented text validated as the field validates config (so "10s" is 10.0)."""
    tp = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(tp).validate_python(value)


COMPONENTS = builtin_components()


def test_every_builtin_component_is_checked() -> None:
    kinds = {k for k, _, _ in COMPONENTS}
    assert kinds == set(GROUPS), COMPONENTS
    assert len(COMPONENTS) >= 8  # cpu, offcpu, otlp; symbolize; folded, pprof, otlp, otlp_http


def check(model: type[BaseModel], readme: Path) -> list[str]:
    """What the README's settings table gets wrong about ``model``."""
    names = documented(readme)
    if not names:
        return ["no '| setting | default | meaning |' table"]
    all_fields = fields(model)
    problems: list[str] = []
    for path, info in model.model_fields.items():
        for missing in undocumented(path, info, names):
            problems.append(f"field {missing!r} is not in the table")
    for name, row in sorted(names.items()):
        if name not in all_fields:
            problems.append(f"row {name!r} is not a field of {model.__name__}")
            continue
        promised = parse_default(row.default)
        if promised is NOT_A_LITERAL:
            continue
        actual = model_default(model, name)
        if promised is ... or actual is ...:
            if promised is not actual:
                problems.append(f"{name}: documented {row.default!r}, model default {actual!r}")
            continue
        try:
            value = as_field_value(all_fields[name], promised)
        except ValueError as e:
            problems.append(f"{name}: documented default {row.default!r} is not valid: {e}")
            continue
        same = (
            math.isclose(value, actual, rel_tol=1e-9)  # "10us" is 10 * 1e-6, not quite 1e-05
            if isinstance(value, float) and isinstance(actual, int | float)
            else value == actual
        )
        if not same:
            problems.append(f"{name}: documented default {row.default!r}, model has {actual!r}")
    return problems


@pytest.mark.parametrize(("kind", "ctype", "package"), COMPONENTS, ids=lambda v: str(v))
def test_settings_table_matches_config_model(kind: str, ctype: str, package: str) -> None:
    model = Registry().get(kind, ctype).config_model  # type: ignore[arg-type]
    readme = readme_of(package)
    assert readme.is_file(), f"{kind} {ctype}: no README at {readme}"
    problems = check(model, readme)
    assert not problems, f"{readme.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


class _Inner(BaseModel):
    ca_file: str | None = None
    verify: bool = True


class _Model(BaseModel):
    directory: Path
    interval: Duration = 10.0
    names: list[str] = Field(default_factory=list)
    tls: _Inner = _Inner()
    label: str | None = None


def test_the_checker_finds_each_kind_of_mistake(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "| setting | default | meaning |\n|---|---|---|\n"
        "| `directory` | required | |\n| `interval` | `10s` | |\n| `names` | `[]` | |\n"
        "| `tls.ca_file` | none | |\n| `tls.verify` | `true` | |\n| `label` | a name | |\n"
    )
    assert check(_Model, readme) == []
    text = readme.read_text()
    for old, new, problem in [
        ("`10s`", "`5s`", "interval: documented default '`5s`', model has 10.0"),
        ("| `names` | `[]` | |\n", "", "field 'names' is not in the table"),
        ("| `tls.verify` | `true` | |\n", "", "field 'tls.verify' is not in the table"),
        ("`tls.verify` | `true`", "`tls.verify` | `false`", "tls.verify: documented"),
        ("`label`", "`labels`", "row 'labels' is not a field of _Model"),
        ("`directory` | required", "`directory` | `/tmp`", "directory: documented '`/tmp`'"),
        ("`interval` | `10s`", "`interval` | `soon`", "is not valid"),
    ]:
        readme.write_text(text.replace(old, new))
        found = check(_Model, readme)
        assert any(problem in p for p in found), (problem, found)
    readme.write_text("| `tls` | | |\n")
    assert check(_Model, readme) == ["no '| setting | default | meaning |' table"]


def service_leaves(model: type[BaseModel] = ServiceConfig, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name == "pipelines":
            continue  # the pipelines' shape is shown by the README's config example
        sub = nested_model(info.annotation)
        if sub is not None:
            out.update(service_leaves(sub, f"{prefix}{name}."))
        else:
            out[prefix + name] = info.get_default(call_default_factory=True)
    return out


def test_root_readme_service_settings() -> None:
    text = (ROOT / "README.md").read_text()
    leaves = service_leaves()
    mentioned = {m.removeprefix("service.") for m in re.findall(r"`([a-z_.]+)`", text)}
    missing = sorted(set(leaves) - mentioned)
    assert not missing, f"README.md does not mention service settings {missing}"
    # "`queue_size` (batches per bounded queue, 64)", "`shutdown_timeout` (30 s)": the last
    # number in the parentheses after a setting is its default.
    stated = re.finditer(r"`(?:service\.)?([a-z_.]+)`([^`()]{0,40})\(([^)]*)\)", text)
    checked = 0
    for m in stated:
        name, paren = m.group(1), m.group(3)
        numbers = re.findall(r"\d+(?:\.\d+)?", paren)
        if name in leaves and numbers and isinstance(leaves[name], int | float):
            checked += 1
            assert float(numbers[-1]) == leaves[name], (name, paren, leaves[name])
    assert checked >= 3, "expected the defaults of queue_size, shutdown_timeout, report_interval"
