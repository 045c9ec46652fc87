"""The `rnn_golden` fixture's object: check your own seeded module's outputs against a golden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.pytest_plugin.state import PluginState

FIXTURE_DIR_NAME = "rnn_golden"


class GoldenChecker:
    """`rnn_golden.check(name, outputs)`, or `rnn_golden.check(name, model=m, inputs=x)`."""

    def __init__(self, state: PluginState, request: pytest.FixtureRequest) -> None:
        self.state = state
        self.test_id = request.node.nodeid
        self.root = state.fixture_golden_dir or Path(request.node.path).parent / FIXTURE_DIR_NAME

    def check(self, name: str, outputs: Any = None, *, model: Any = None, inputs: Any = None,
              atol: float | None = None, rtol: float | None = None) -> None:
        """Fail the test with a harness-style report unless the outputs match golden `name`.

        Given `model` and `inputs` instead of outputs, the module runs under the pinned thread count
        (--harness-threads, default 1) and a drift names its first changed link: inputs, weights or compute.
        """
        __tracebackhide__ = True
        from harness.errors import HarnessError
        from harness.model.tolerance import Tolerance
        from harness.session.fixture import produced_from_model, produced_from_outputs

        try:
            tolerance = Tolerance.pair(atol, rtol, where=f"rnn_golden.check({name!r})")
            if (outputs is None) == (model is None) or (model is None) != (inputs is None):
                raise HarnessError(f"rnn_golden.check({name!r}): give the outputs, or model= and inputs=")
            fixture = self.state.fixture
            produced = (produced_from_model(model, inputs, fixture.threads) if model is not None
                        else produced_from_outputs(outputs))
            result = fixture.check(self.root, name, produced, test_id=self.test_id, tolerance=tolerance)
        except HarnessError as error:
            pytest.fail(f"harness: {error.message}", pytrace=False)
        if result.recorded:
            self.state.written.append(result.lines[0])
        if not result.passed:
            pytest.fail("\n".join(result.lines), pytrace=False)
