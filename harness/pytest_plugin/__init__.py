"""The pytest plugin (entry point `pytest11: harness`): a thin shell over the session core.

- `pytest --harness` collects one item per config x backend, `harness::test_golden[<config>-<backend>]`,
  so -k, --lf, -x, --junitxml and pytest-xdist work as usual.
- The `rnn_golden` fixture checks a user's own seeded module against a golden in their repository.
- Stale goldens (no config of the suite uses them) are reported at the end; --harness-strict fails on them.

Options come from harness.options, the table the CLI reads too. Heavy imports (torch, onnxruntime)
happen only when harness items are collected or the fixture runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.options import plugin_options, plugin_path_flags
from harness.pytest_plugin.state import STATE, PluginState, option_values

GOLDEN_DIR_INI = "harness_golden_dir"
FIXTURE_DIR_INI = "harness_fixture_golden_dir"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "reproducibility goldens for seeded RNNs")
    group.addoption("--harness", action="store_true", help="collect one test per suite config x backend")
    for option in plugin_options():
        kwargs = option.argparse_kwargs()
        kwargs["dest"] = f"harness_{option.name}"
        group.addoption(option.plugin_flag, **kwargs)
    parser.addini(GOLDEN_DIR_INI, "golden directory of --harness, relative to the rootdir", default="golden")
    parser.addini(FIXTURE_DIR_INI, "directory of the rnn_golden fixture's goldens, relative to the rootdir "
                                   "(default: rnn_golden/ next to each test file)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "harness: a golden check collected by the harness plugin")
    _refuse_separate_path_values(config)
    values = option_values(config)
    golden_dir = values["golden_dir"] or config.rootpath / config.getini(GOLDEN_DIR_INI)
    fixture_dir = values["fixture_golden_dir"] or (
        config.rootpath / config.getini(FIXTURE_DIR_INI) if config.getini(FIXTURE_DIR_INI) else None)
    config.stash[STATE] = PluginState(values=values, golden_dir=Path(golden_dir),
                                      fixture_golden_dir=Path(fixture_dir) if fixture_dir else None)


def _refuse_separate_path_values(config: pytest.Config) -> None:
    """pytest picks its rootdir before plugins add their options, so in `--harness-suite FILE` it takes FILE
    for a test path and may move the rootdir (and with it the default golden directory): demand '='."""
    arguments = [str(argument) for argument in config.invocation_params.args]
    for flag in plugin_path_flags():
        if flag in arguments[:-1]:
            value = arguments[arguments.index(flag) + 1]
            raise pytest.UsageError(f"write {flag}={value} (with '='): given apart, pytest takes {value} for a "
                                    "test path and may choose another rootdir, and so another golden directory")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the harness items before -k, --lf and xdist see the collection."""
    if not config.getoption("--harness"):
        return
    from harness.pytest_plugin.items import add_items

    state = config.stash[STATE]
    try:
        # Said as such, not as N missing goldens; under --harness-update a directory that exists is checked too,
        # so a symlinked golden/artifacts stops the session before any record writes or deletes through it.
        if not config.option.collectonly and (not state.values["update"] or state.golden_dir.exists()):
            state.session.require_golden_dir()
        add_items(session, state, items)
    except HarnessError as error:
        raise pytest.UsageError(error.message.replace("(--golden-dir)", "(--harness-golden-dir)")) from None


@pytest.fixture
def rnn_golden(request: pytest.FixtureRequest) -> Any:
    """Check your own seeded module against a golden: `rnn_golden.check("name", outputs)` or
    `rnn_golden.check("name", model=module, inputs=x)`."""
    from harness.pytest_plugin.fixture import GoldenChecker

    return GoldenChecker(request.config.stash[STATE], request)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    written = config.stash[STATE].written
    if written:
        terminalreporter.section("harness: goldens written")
        for line in written:
            terminalreporter.write_line(line)
    failing = config.stash[STATE].failing  # this process's (each xdist worker's item says its own command)
    if failing:
        terminalreporter.section("harness: accept these results")
        terminalreporter.write_line(f"re-record the goldens of the {len(failing)} failing config(s): "
                                    f"{config.stash[STATE].update_command(tuple(failing), force=True)}")
    lines = _stale_lines(config)
    if lines:
        terminalreporter.section("harness: stale goldens")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    on_controller = not hasattr(config, "workerinput")  # xdist workers leave this to the controller
    if on_controller and config.getoption("harness_strict") and _stale_lines(config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _stale_lines(config: pytest.Config) -> list[str]:
    """Goldens in the directory that no config of the suite uses (independent of -k, shards, xdist)."""
    if not config.getoption("--harness"):
        return []
    state: PluginState = config.stash[STATE]
    try:
        stale = state.session.stale_goldens()
    except HarnessError:
        return []
    if not stale:
        return []
    verdict = "failing the session (--harness-strict)" if config.getoption("harness_strict") else "not failing"
    count = f"{len(stale)} golden{'s' if len(stale) != 1 else ''}"
    suite = f" --suite {state.values['suite']}" if state.values.get("suite") else ""
    return [f"{count} in {state.golden_dir} used by no config of the suite ({verdict}); "
            f"remove them with: harness prune{suite} --golden-dir {state.golden_dir} --yes",
            *(f"  {config_id}" for config_id in stale)]
