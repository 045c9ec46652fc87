"""The collected harness items: one per config x backend, judged by the session as `harness run` judges."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.pytest_plugin.state import STATE, PluginState

ITEM_PREFIX = "test_golden"


class HarnessSuite(pytest.Collector):
    """The parent node of every harness item."""

    def collect(self) -> list[pytest.Item]:
        return []


class HarnessCellFailure(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Outcome:
    skip: str = ""
    xfail: str = ""
    failure: tuple[str, ...] = ()


def item_outcome(state: PluginState, config_id: str, backend: str) -> Outcome:
    """Record the golden when asked to, judge the cell, and say what pytest should make of it."""
    from harness.reports.terminal import failure_lines
    from harness.verdicts import Verdict

    session = state.session
    config = session.config(config_id)
    recorded = ""
    if backend not in session.unavailable:
        recorded = session.ensure_golden(config, update=bool(state.values["update"]),
                                         force=bool(state.values["force_update"]))
        if recorded:
            state.written.append(f"{recorded} {session.store.manifest_path(config_id)}")
    cell = session.judge(config, backend)
    if cell.verdict is Verdict.UNAVAILABLE:
        return Outcome(skip=f"{backend} unavailable: {cell.reason}")
    if cell.verdict is Verdict.SLOW:
        return Outcome(skip=f"slow: {cell.reason} (pytest --harness-all)")
    if cell.verdict is Verdict.UNSUPPORTED:
        return Outcome(xfail=f"unsupported: {cell.reason}")
    if cell.verdict.failing:
        if cell.verdict is not Verdict.MISSING and config_id not in state.failing:
            state.failing.append(config_id)
        note = [f"  (golden {recorded} by this run)"] if recorded else []
        accept = ([] if cell.verdict is Verdict.MISSING else  # its reason already says how to record it
                  [f"  accept it (re-record the golden): {state.update_command((config_id,), force=True)}"])
        return Outcome(failure=(*failure_lines(cell), *note, *accept))
    return Outcome()


class HarnessItem(pytest.Item):
    """One config x backend."""

    def __init__(self, *, config_id: str, backend: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_id, self.backend = config_id, backend
        self.add_marker("harness")

    def runtest(self) -> None:
        outcome = item_outcome(self.config.stash[STATE], self.config_id, self.backend)
        if outcome.skip:
            pytest.skip(outcome.skip)
        if outcome.xfail:
            pytest.xfail(outcome.xfail)
        if outcome.failure:
            raise HarnessCellFailure(list(outcome.failure))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, HarnessCellFailure):
            return "\n".join(excinfo.value.lines)
        if isinstance(excinfo.value, HarnessError):
            return f"harness: {excinfo.value.message}"
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"harness {self.config_id} x {self.backend}"


def add_items(session: pytest.Session, state: PluginState, items: list[pytest.Item]) -> None:
    """One item per selected config x backend, added before -k, --lf and xdist see the collection."""
    harness = state.session
    names = [(f"{ITEM_PREFIX}[{config.id}-{backend}]", config.id, backend)
             for config in harness.configs for backend in harness.backend_names]
    suite = HarnessSuite.from_parent(session, name="harness", nodeid="harness")
    # The node id is given as text so pytest parses it like any parametrized id (--lf matches it).
    added = [HarnessItem.from_parent(suite, name=name, nodeid=f"harness::{name}", config_id=config_id,
                                     backend=backend)
             for name, config_id, backend in names]
    items.extend(added)
    # Report them like any collected node, so "collected N items" and collection counts include them.
    report = pytest.CollectReport(nodeid="harness", outcome="passed", longrepr=None, result=list(added))
    session.ihook.pytest_collectreport(report=report)
