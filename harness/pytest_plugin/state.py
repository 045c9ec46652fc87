"""The plugin's per-process state, kept in config.stash: option values, one Session, fixture goldens."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.options import plugin_options

if TYPE_CHECKING:  # the session imports numpy and, when it runs, torch: only when an item runs
    from harness.session.core import Session
    from harness.session.fixture import FixtureGoldens


@dataclass
class PluginState:
    values: dict[str, Any]  # option name -> value, as the CLI would have parsed it
    golden_dir: Path
    fixture_golden_dir: Path | None  # None: rnn_golden/ next to each test file
    _session: Session | None = None
    _fixture: FixtureGoldens | None = None
    written: list[str] = field(default_factory=list)  # "recorded <path>" lines, said at the end of the session
    failing: list[str] = field(default_factory=list)  # configs with a failing cell in this process, suite order seen

    @property
    def session(self) -> Session:
        """One Session per process (per xdist worker): the suite parsed and each case built once."""
        if self._session is None:
            from harness.session.core import Session
            from harness.session.settings import settings_from

            settings = settings_from(self.values, golden_dir=self.golden_dir)
            self._session = Session(settings, record_hint=self.record_hint)
        return self._session

    @property
    def fixture(self) -> FixtureGoldens:
        if self._fixture is None:
            from harness.session.fixture import FixtureGoldens

            self._fixture = FixtureGoldens(update=bool(self.values["update"]),
                                           force=bool(self.values["update"] and self.values["force_update"]),
                                           threads=int(self.values["threads"] or 1))
        return self._fixture

    def record_hint(self, config_id: str, force: bool = False) -> str:
        """The pytest command line that records this config's golden (`force`: rewrites an existing one)."""
        return self.update_command((config_id,), force=force)

    def update_command(self, config_ids: tuple[str, ...], *, force: bool) -> str:
        """The pytest command line that records (`force`: rewrites, accepting today's results) these configs'
        goldens, with this session's --harness-suite and --harness-golden-dir."""
        suite = self.values.get("suite")
        flags = f" --harness-suite={suite}" if suite else ""
        rewrite = " --harness-force-update" if force else ""
        # -k matches substrings of item names (test_golden[<config>-<backend>]): "[<config>-" selects this config
        # only, where plain "rnn-h8-s1" would select rnn-h8-s10 too
        selection = "'" + " or ".join(f"[{config_id}-" for config_id in config_ids) + "'"
        return (f"pytest --harness{flags} --harness-golden-dir={self.golden_dir} --harness-update{rewrite} "
                f"-k {selection}")


STATE = pytest.StashKey[PluginState]()


def option_values(config: pytest.Config) -> dict[str, Any]:
    """Every plugin option's value, keyed by its name in the options table."""
    return {option.name: config.getoption(f"harness_{option.name}") for option in plugin_options()}
