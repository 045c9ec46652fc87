"""What the pytest plugin runs for one item or fixture call; imported only when a test runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from harness.model.case import build_case
from harness.session.engine import RunOptions, case_facts, load_matching_golden, pinned_threads, run_cell
from harness.errors import GoldenError
from harness.store.golden import GoldenStore
from harness.session.record import record_golden
from harness.reports.terminal import failure_lines
from harness.judging.results import Verdict
from harness.model.suite import load_suite
from harness.store.user_golden import check_user_golden

if TYPE_CHECKING:
    from harness.pytest_plugin import PluginState


@dataclass(frozen=True)
class Outcome:
    skip: str = ""
    xfail: str = ""
    failure: list[str] | None = None


def run_item(state: PluginState, config_id: str, backend_name: str) -> Outcome:
    from harness.backends import get_backend

    if not state.configs:
        state.configs = {config.id: config for config in load_suite(state.suite_path).configs}
    rnn_config = state.configs[config_id]
    store = GoldenStore(state.golden_dir)
    backend = get_backend(backend_name)
    availability = backend.availability()
    if not availability.available:
        return Outcome(skip=f"{backend_name} unavailable: {availability.reason}")
    recorded = _ensure_golden(state, store, rnn_config)
    if rnn_config.id not in state.cases:  # the backends of one config share its case, oracle and golden
        case = build_case(rnn_config)
        state.cases[rnn_config.id] = (case, case_facts(case), load_matching_golden(store, rnn_config))
    case, facts, golden = state.cases[rnn_config.id]
    options = RunOptions(backends=(backend_name,), include_slow=state.include_slow)
    with pinned_threads(options.threads):
        cell = run_cell(case, facts, backend, golden, options)
    if cell.verdict is Verdict.SLOW:
        return Outcome(skip=f"slow: {cell.reason} (pytest --harness-all)")
    if cell.verdict is Verdict.UNSUPPORTED:
        return Outcome(xfail=f"unsupported: {cell.reason}")
    if cell.verdict.failing:
        note = [f"  (golden {recorded} by this run)"] if recorded else []
        return Outcome(failure=[*failure_lines(cell), *note])
    return Outcome()


def _ensure_golden(state: PluginState, store: GoldenStore, rnn_config: Any) -> str:
    """Record the golden when asked to; returns "recorded"/"rewritten" when this process wrote it."""
    exists = store.exists(rnn_config.id)
    wanted = (state.update and not exists) or (state.update and state.force_update)
    if not wanted or rnn_config.id in state.recorded:
        if not exists:
            raise GoldenError(f"{store.manifest_path(rnn_config.id)}: no golden for this config; "
                              "record it with pytest --harness --harness-update")
        return ""
    try:
        record_golden(rnn_config, store, force=exists)
    except GoldenError:
        if not store.exists(rnn_config.id):  # another xdist worker wins a race by writing the same golden
            raise
    state.recorded.add(rnn_config.id)
    return "rewritten" if exists else "recorded"


class GoldenChecker:
    """The `rnn_golden` fixture's object: check named outputs of your own module against a golden."""

    def __init__(self, state: PluginState) -> None:
        self.state = state

    def check(self, name: str, outputs: Any, *, atol: float | None = None, rtol: float | None = None) -> None:
        """Fail the test with a harness-style report unless outputs match golden `name`."""
        __tracebackhide__ = True
        from harness.judging.tolerance import Tolerance

        if (atol is None) != (rtol is None):
            raise ValueError("atol and rtol go together: give both or neither")
        tolerance = Tolerance(atol=atol, rtol=rtol) if atol is not None and rtol is not None else None
        result = check_user_golden(self.state.golden_dir, name, outputs, update=self.state.update,
                                   force=self.state.update and self.state.force_update, tolerance=tolerance)
        if not result.passed:
            pytest.fail("\n".join(result.lines), pytrace=False)
