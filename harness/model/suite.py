"""Suites: TOML files listing configurations, the reference notebook case first."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from harness.model.config import RnnConfig
from harness.errors import ConfigError, SuiteError, UnknownNameError

REFERENCE_CONFIG = RnnConfig()
DEFAULT_SUITE_NAME = "default.toml"


@dataclass(frozen=True, kw_only=True)
class Suite:
    """A named, ordered set of configurations with unique ids."""

    name: str
    source: str
    configs: tuple[RnnConfig, ...]

    def ids(self) -> list[str]:
        return [config.id for config in self.configs]

    def select(self, ids: list[str] | None) -> tuple[RnnConfig, ...]:
        """The configs named by ids (in suite order), or all of them; unknown ids are errors."""
        if not ids:
            return self.configs
        by_id = {config.id: config for config in self.configs}
        unknown = [config_id for config_id in ids if config_id not in by_id]
        if unknown:
            raise UnknownNameError(
                f"unknown config {', '.join(map(repr, unknown))} in suite {self.source}; "
                "`harness list` shows the ids"
            )
        wanted = set(ids)
        return tuple(config for config in self.configs if config.id in wanted)


def default_suite_path() -> Path:
    return Path(str(resources.files("harness.model.suites").joinpath(DEFAULT_SUITE_NAME)))


def load_suite(path: Path | None = None) -> Suite:
    """Parse and validate a suite file (the packaged default when path is None)."""
    path = path or default_suite_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SuiteError(f"{path}: cannot read suite: {error.strerror or error}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"{path}: not valid TOML: {error}") from None
    return parse_suite(document, source=str(path))


def parse_suite(document: dict[str, Any], *, source: str) -> Suite:
    """Validate a parsed suite document; every message names the source and the case."""
    header = document.get("suite", {})
    cases = document.get("case")
    unknown = sorted(set(document) - {"suite", "defaults", "case"})
    if unknown:
        raise SuiteError(f"{source}: unknown table(s) {', '.join(unknown)}; expected [suite], [defaults], [[case]]")
    if not isinstance(cases, list) or not cases:
        raise SuiteError(f"{source}: no [[case]] tables: a suite needs at least the reference case")
    defaults = document.get("defaults", {})
    configs: list[RnnConfig] = []
    seen: dict[str, int] = {}
    for number, case in enumerate(cases, start=1):
        try:
            config = RnnConfig.from_dict({**defaults, **case})
        except (ConfigError, TypeError) as error:
            message = error.message if isinstance(error, ConfigError) else str(error)
            raise SuiteError(f"{source}: case {number}: {message}") from None
        if config.id in seen:
            raise SuiteError(f"{source}: case {number}: duplicate id {config.id!r} (first at case {seen[config.id]})")
        seen[config.id] = number
        configs.append(config)
    if configs[0] != REFERENCE_CONFIG:
        raise SuiteError(
            f"{source}: case 1 must be the reference notebook case ({REFERENCE_CONFIG.id}: "
            "rnn_tanh, input 4, hidden 8, seed 0, hello batch)"
        )
    return Suite(name=str(header.get("name", Path(source).stem)), source=source, configs=tuple(configs))
