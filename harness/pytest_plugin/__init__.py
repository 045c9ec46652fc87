"""The pytest plugin (entry point `pytest11: harness`): a thin shell over the library.

- `pytest --harness` collects one item per config x backend, `harness::test_golden[<config>-<backend>]`,
  so -k, --lf, -x, --junitxml and pytest-xdist work as usual.
- The `rnn_golden` fixture checks a user's own seeded module against a golden in their repository.
- Stale goldens (no config of the suite uses them) are reported at the end; --harness-strict fails on them.

Heavy imports (torch, onnxruntime) happen only when a harness item or the fixture runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError

ITEM_PREFIX = "test_golden"


@dataclass
class PluginState:
    """Per-process plugin state, kept in config.stash."""

    suite_path: Path | None
    golden_dir: Path
    backends: tuple[str, ...]
    update: bool
    force_update: bool
    include_slow: bool
    configs: dict[str, Any] = field(default_factory=dict)  # config id -> RnnConfig, the suite parsed once
    cases: dict[str, Any] = field(default_factory=dict)  # config id -> (case, facts, golden), built once
    recorded: set[str] = field(default_factory=set)


STATE = pytest.StashKey[PluginState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "reproducibility goldens for seeded RNNs")
    group.addoption("--harness", action="store_true", help="collect one test per suite config x backend")
    group.addoption("--harness-suite", type=Path, help="suite TOML (default: the packaged suite)")
    group.addoption("--harness-backends", help="comma-separated backends or families (default: the CLI's default)")
    group.addoption("--harness-golden-dir", type=Path, help="golden directory (default: <rootdir>/golden)")
    group.addoption("--harness-update", action="store_true", help="record goldens that are missing")
    group.addoption("--harness-force-update", action="store_true",
                    help="with --harness-update: also rewrite existing goldens")
    group.addoption("--harness-all", action="store_true", help="include cells tagged slow")
    group.addoption("--harness-shard", metavar="K/N", help="collect only shard K of N of the suite")
    group.addoption("--harness-strict", action="store_true", help="fail the session when stale goldens exist")
    parser.addini("harness_golden_dir", "golden directory for --harness and the rnn_golden fixture", default="golden")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "harness: a golden check collected by the harness plugin")
    golden_dir = config.getoption("--harness-golden-dir") or config.rootpath / config.getini("harness_golden_dir")
    backends = config.getoption("--harness-backends")
    config.stash[STATE] = PluginState(
        suite_path=config.getoption("--harness-suite"),
        golden_dir=Path(golden_dir),
        backends=tuple(name.strip() for name in backends.split(",")) if backends else (),
        update=config.getoption("--harness-update"),
        force_update=config.getoption("--harness-force-update"),
        include_slow=config.getoption("--harness-all"),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the harness items before -k, --lf and xdist see the collection."""
    if not config.getoption("--harness"):
        return
    from harness.backends import DEFAULT_BACKENDS, expand_backend_names
    from harness.model.shard import parse_shard, select_shard
    from harness.model.suite import load_suite

    state = config.stash[STATE]
    try:
        configs = load_suite(state.suite_path).configs
        shard = config.getoption("--harness-shard")
        if shard:
            configs = select_shard(configs, *parse_shard(shard))
        backends = expand_backend_names(state.backends or DEFAULT_BACKENDS)
    except HarnessError as error:
        raise pytest.UsageError(error.message) from None
    suite = HarnessSuite.from_parent(session, name="harness", nodeid="harness")
    names = [(f"{ITEM_PREFIX}[{rnn_config.id}-{backend}]", rnn_config.id, backend)
             for rnn_config in configs for backend in backends]
    # The node id is given as text so pytest parses it like any parametrized id (--lf matches it).
    added = [HarnessItem.from_parent(suite, name=name, nodeid=f"harness::{name}", config_id=config_id, backend=backend)
             for name, config_id, backend in names]
    items.extend(added)
    # Report them like any collected node, so "collected N items" and collection counts include them.
    report = pytest.CollectReport(nodeid="harness", outcome="passed", longrepr=None, result=list(added))
    session.ihook.pytest_collectreport(report=report)


class HarnessSuite(pytest.Collector):
    """The parent node of every harness item."""

    def collect(self) -> list[pytest.Item]:
        return []


class HarnessCellFailure(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class HarnessItem(pytest.Item):
    """One config x backend, judged as `harness run` judges it."""

    def __init__(self, *, config_id: str, backend: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_id, self.backend = config_id, backend
        self.add_marker("harness")

    def runtest(self) -> None:
        from harness.session.plugin_runner import run_item

        outcome = run_item(self.config.stash[STATE], self.config_id, self.backend)
        if outcome.skip:
            pytest.skip(outcome.skip)
        if outcome.xfail:
            pytest.xfail(outcome.xfail)
        if outcome.failure:
            raise HarnessCellFailure(outcome.failure)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, HarnessCellFailure):
            return "\n".join(excinfo.value.lines)
        if isinstance(excinfo.value, HarnessError):
            return f"harness: {excinfo.value.message}"
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"harness {self.config_id} x {self.backend}"


@pytest.fixture
def rnn_golden(request: pytest.FixtureRequest) -> Any:
    """Check your own seeded module's outputs against a golden: `rnn_golden.check("name", outputs)`."""
    from harness.session.plugin_runner import GoldenChecker

    return GoldenChecker(request.config.stash[STATE])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = _stale_lines(config)
    if lines:
        terminalreporter.section("harness: stale goldens")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    on_controller = not hasattr(config, "workerinput")  # xdist workers leave this to the controller
    if on_controller and config.getoption("--harness-strict") and _stale_lines(config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _stale_lines(config: pytest.Config) -> list[str]:
    """Goldens in the directory that no config of the suite uses (independent of -k, shards, xdist)."""
    if not config.getoption("--harness"):
        return []
    from harness.store.golden import GoldenStore
    from harness.model.suite import load_suite

    state = config.stash[STATE]
    try:
        suite_ids = set(load_suite(state.suite_path).ids())
    except HarnessError:
        return []
    stale = [config_id for config_id in GoldenStore(state.golden_dir).stored_ids() if config_id not in suite_ids]
    if not stale:
        return []
    verdict = "failing the session (--harness-strict)" if config.getoption("--harness-strict") else "not failing"
    return [f"{len(stale)} golden(s) in {state.golden_dir} used by no config of the suite ({verdict}):",
            *(f"  {config_id}" for config_id in stale)]
