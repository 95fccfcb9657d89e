"""Fixtures of the fault suite. The restartable private cluster (``own_cluster``) is
tests/support/cluster.py's, served by tests/conftest.py; the figures collector writes
test-artifacts/fault-figures.json."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from scenario_engine.scenarios.rules import Rules, load_rules
from tests.support.faults import RULES_TOML, FaultGateway
from tests.support.figures import Figures, write_figures


@pytest.fixture(scope="session")
def _figures_collector() -> Iterator[list[Figures]]:
    entries: list[Figures] = []
    yield entries
    if entries:
        write_figures(entries)


@pytest.fixture
def figures(request: pytest.FixtureRequest, _figures_collector: list[Figures]) -> Iterator[Figures]:
    """This test's figures; recorded only if the test passed (a failed run claims nothing)."""
    fig = Figures(test=request.node.name)
    yield fig
    report = request.node.stash.get(REPORT_KEY, None)
    if report is not None and report.passed:
        _figures_collector.append(fig)


REPORT_KEY = pytest.StashKey[pytest.TestReport]()  # the call phase's report, for the figures


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[REPORT_KEY] = report
    return report


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES_TOML)
    return path


@pytest.fixture
def fault_rules(rules_path: Path) -> Rules:
    return load_rules(rules_path)


@pytest.fixture
async def fault_gateway() -> AsyncIterator[FaultGateway]:
    gw = FaultGateway()
    await gw.start()
    yield gw
    await gw.stop()
