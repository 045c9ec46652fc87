"""Suites: TOML files listing configurations.

The default suite (and any suite whose [suite] table sets `require_reference_case = true`) must hold
the reference notebook case first. A case may carry `atol` and `rtol` (both or neither): that
config's own tolerance, kept out of the config and its content hash.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError, SuiteError, UnknownNameError
from harness.model.budget import DEFAULT_MAX_MEMORY, check_budget
from harness.model.config import CHECKS, RnnConfig
from harness.model.factories import add_model_directory
from harness.model.tolerance import Tolerance

REFERENCE_CONFIG = RnnConfig()
DEFAULT_SUITE_NAME = "default.toml"


@dataclass(frozen=True, kw_only=True)
class Suite:
    """A named, ordered set of configurations with unique ids."""

    name: str
    source: str
    configs: tuple[RnnConfig, ...]
    tolerances: dict[str, Tolerance] = field(default_factory=dict)  # config id -> the case's own tolerance

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


def load_suite(path: Path | None = None, *, max_memory: int = DEFAULT_MAX_MEMORY) -> Suite:
    """Parse and validate a suite file (the packaged default when path is None); a config whose
    estimated memory need is above max_memory bytes is refused with the estimate."""
    default = path is None
    path = path or default_suite_path()
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise SuiteError(f"{path}: cannot read suite: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise SuiteError(f"{path}: not UTF-8 text (byte {error.start}): a suite is a TOML file") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:
        raise SuiteError(f"{path}: nested too deeply to be a suite") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise SuiteError(f"{path}: not a usable TOML value: {error}") from None
    suite = parse_suite(document, source=str(path), require_reference=default, max_memory=max_memory)
    if any(config.model for config in suite.configs):
        add_model_directory(path.parent)  # a model module kept next to its suite is found (see factories)
    return suite


SUITE_KEYS = {"name": str, "require_reference_case": bool}
CASE_TOLERANCE_KEYS = ("atol", "rtol")


def parse_suite(document: dict[str, Any], *, source: str, require_reference: bool = False,
                max_memory: int = DEFAULT_MAX_MEMORY) -> Suite:
    """Validate a parsed suite document; every message names the source and the case."""
    unknown = sorted(set(document) - {"suite", "defaults", "case"})
    if unknown:
        raise SuiteError(f"{source}: unknown table(s) {', '.join(unknown)}; expected [suite], [defaults], [[case]]")
    header, defaults, cases = document.get("suite", {}), document.get("defaults", {}), document.get("case")
    _check_header(header, source)
    if not isinstance(defaults, dict):
        raise SuiteError(f"{source}: [defaults] must be a table, got {type(defaults).__name__}")
    if not isinstance(cases, list) or not cases:
        raise SuiteError(f"{source}: no [[case]] tables: a suite needs at least one case")
    configs: list[RnnConfig] = []
    tolerances: dict[str, Tolerance] = {}
    seen: dict[str, int] = {}
    for number, case in enumerate(cases, start=1):
        if not isinstance(case, dict):
            raise SuiteError(f"{source}: case {number}: must be a [[case]] table, got {type(case).__name__}")
        fields = {**defaults, **case}
        atol, rtol = (fields.pop(key, None) for key in CASE_TOLERANCE_KEYS)
        try:
            tolerance = Tolerance.pair(atol, rtol, where="tolerance")
            expanded = [RnnConfig.from_dict(each) for each in per_check(fields)]
            for config in expanded:
                check_budget(config, max_memory)
        except HarnessError as error:
            raise SuiteError(f"{source}: case {number}: {error.message}") from None
        for config in expanded:
            if config.id in seen:
                raise SuiteError(f"{source}: case {number}: duplicate id {config.id!r} "
                                 f"(first at case {seen[config.id]})")
            seen[config.id] = number
            configs.append(config)
            if tolerance is not None:
                tolerances[config.id] = tolerance
    if (require_reference or header.get("require_reference_case")) and configs[0] != REFERENCE_CONFIG:
        raise SuiteError(
            f"{source}: case 1 must be the reference notebook case ({REFERENCE_CONFIG.id}: "
            "rnn_tanh, input 4, hidden 8, seed 0, hello batch)"
        )
    return Suite(name=str(header.get("name", Path(source).stem)), source=source, configs=tuple(configs),
                 tolerances=tolerances)


def per_check(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """A case's fields, once per entry of its `checks` list (["forward"] when it has none): each check is a
    config of its own, with its own id and golden. train_steps, learning_rate and optimizer stay with "train";
    targets and loss with "grad" and "train"."""
    if "checks" not in fields:
        return [fields]
    checks = fields["checks"]
    if not isinstance(checks, list) or not checks or not all(isinstance(check, str) for check in checks):
        raise ConfigError(f"checks must be a non-empty list of {', '.join(map(repr, CHECKS))}, got {checks!r}")
    if len(set(checks)) != len(checks):
        raise ConfigError(f"checks lists a check twice: {checks}")
    if "check" in fields:
        raise ConfigError("give either check or checks, not both")
    common = {key: value for key, value in fields.items() if key != "checks"}
    return [{**{key: value for key, value in common.items() if key not in _BELONGS_TO or check in _BELONGS_TO[key]},
             "check": check} for check in checks]


# The keys that only some checks take: a case's `checks` list gives each check only its own.
_BELONGS_TO = {"train_steps": ("train",), "learning_rate": ("train",), "optimizer": ("train",),
               "targets": ("grad", "train"), "loss": ("grad", "train")}


def _check_header(header: Any, source: str) -> None:
    if not isinstance(header, dict):
        raise SuiteError(f"{source}: [suite] must be a table, got {type(header).__name__}")
    for key, value in header.items():
        if key not in SUITE_KEYS:
            raise SuiteError(f"{source}: [suite]: unknown key {key!r}; known: {', '.join(SUITE_KEYS)}")
        if not isinstance(value, SUITE_KEYS[key]):
            raise SuiteError(f"{source}: [suite]: {key} must be {SUITE_KEYS[key].__name__}, got {value!r}")
