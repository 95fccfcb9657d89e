"""The package as a user finds it: --version, the license, the fcm extra, the webhook's
User-Agent, machine-readable output kept clean of logs, and metrics that match the docs."""

from __future__ import annotations

import ast
import re

from tests.support.packaging import OPERATIONS, PYPROJECT, ROOT, _section


def test_license_file_is_the_mit_license_pyproject_declares() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) the Scenario Trigger Engine authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_image_installs_the_fcm_extra_and_ships_the_license() -> None:
    """The image serves every provider the configuration accepts, and its wheel is built
    with the license the metadata names."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    final = dockerfile.rindex("\nFROM ")
    builder = dockerfile[:final]
    copies = [line.split()[1:-1] for line in builder.splitlines() if line.startswith("COPY ")]
    assert any("LICENSE" in sources for sources in copies), "the builder stage does not COPY LICENSE"
    assert re.search(r"pip install [^\n]*scenario_engine-\*\.whl\)?\[fcm\]", builder), (
        "the image's install lacks the fcm extra"
    )


def _metric_names_by_attribute() -> dict[str, str]:
    """``Metrics`` attribute → exported family name (a Counter's gets ``_total``)."""
    tree = ast.parse((ROOT / "daemon" / "scenario_engine" / "runtime" / "metrics.py").read_text())
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        target, call = node.targets[0], node.value
        kind = call.func.id if isinstance(call.func, ast.Name) else ""
        if (
            isinstance(target, ast.Attribute)
            and kind in {"Counter", "Gauge", "Histogram"}
            and call.args
            and isinstance(call.args[0], ast.Constant)
        ):
            out[target.attr] = str(call.args[0].value) + ("_total" if kind == "Counter" else "")
    return out


def _literal_label_values() -> dict[str, set[str]]:
    """family name → every label value the code passes as a literal to ``.<metric>.labels(…)``."""
    names = _metric_names_by_attribute()
    found: dict[str, set[str]] = {}
    for path in (ROOT / "daemon" / "scenario_engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "labels"
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr in names
            ):
                values = {
                    a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                }
                found.setdefault(names[node.func.value.attr], set()).update(values)
    return found


def test_every_literal_label_value_is_documented() -> None:
    """Each label value the code emits as a literal (e.g. ``sweeps.labels("fenced")``) appears,
    in backticks, in that metric's row of docs/OPERATIONS.md: an alert author reads the table."""
    rows = _section(OPERATIONS.read_text(), "Metrics").splitlines()
    emitted = _literal_label_values()
    assert "failed" in emitted["scenario_sweeps_total"]  # the scan itself works
    missing: dict[str, set[str]] = {}
    for family, values in emitted.items():
        [row] = [r for r in rows if re.search(rf"`{family}(\{{[^}}]*\}})?`", r)] or [""]
        missing |= {family: {v for v in values if f"`{v}`" not in row}} if values else {}
    assert {f: v for f, v in missing.items() if v} == {}, "label values missing from docs/OPERATIONS.md"
