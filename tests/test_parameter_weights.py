"""Per-parameter weights: goldens hold each parameter's sha256 (harness.golden/3), and a cell whose weights are not
the golden's names the parameters that changed, whether it passes or fails; /2 goldens still load and run."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.errors import GoldenError
from harness.judging.results import CellResult, RunReport, WeightsChange
from harness.model.environment import current_environment
from harness.reports.ci_files import run_markdown
from harness.reports.terminal import report_lines
from harness.store.golden import GoldenStore
from harness.verdicts import Cause, Verdict
from tests.conftest import REFERENCE_ID, CliResult

Cli = Callable[..., CliResult]

MODULE = "pw_model"
NUDGE = "PW_NUDGE"  # "<parameter>" moves that parameter's first element by 1e-2 in the factory
BACKENDS = ("--backend", "eager", "--backend", "torchscript-script")

# A user's model with a recurrent layer and a head; the factory nudges one weight when told to.
MODEL = f'''
import os

import torch
from torch import nn


class Tagger(nn.Module):
    output_names = ("scores", "h_n")

    def __init__(self, hidden):
        super().__init__()
        self.gru = nn.GRU(4, hidden)
        self.head = nn.Linear(hidden, 4)

    def forward(self, x):
        out, h_n = self.gru(x)
        return self.head(out), h_n


def build(config):
    model = Tagger(config.hidden_size)
    nudged = os.environ.get("{NUDGE}")
    if nudged:
        with torch.no_grad():
            model.get_parameter(nudged).view(-1)[0] += 1e-2
    return model
'''

SUITE = f'''[suite]
name = "pw"

[defaults]
model = "{MODULE}:build"
cell = "gru"
hidden_size = 6

[[case]]
input = "hello"
'''


@dataclass(frozen=True)
class Recorded:
    select: tuple[str, ...]  # the run's arguments: suite, golden directory, backends
    config_id: str
    store: GoldenStore

    @property
    def manifest(self) -> Path:
        return self.store.manifest_path(self.config_id)


@pytest.fixture
def recorded(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """The model recorded on eager and TorchScript."""
    directory = tmp_path / "models"
    directory.mkdir()
    (directory / f"{MODULE}.py").write_text(MODEL, encoding="utf-8")
    (directory / "suite.toml").write_text(SUITE, encoding="utf-8")
    monkeypatch.delenv(NUDGE, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    select = ("--suite", str(directory / "suite.toml"), "--golden-dir", str(tmp_path / "golden"), *BACKENDS)
    result = cli("record", *select)
    assert result.exit_code == 0, result.out + result.err
    store = GoldenStore(tmp_path / "golden")
    (config_id,) = store.stored_ids()
    return Recorded(select=select, config_id=config_id, store=store)


def run_json(cli: Cli, tmp_path: Path, *args: str) -> tuple[CliResult, list[dict[str, Any]]]:
    report = tmp_path / "report.json"
    result = cli("run", *args, "--no-cache", "--json", str(report))
    return result, json.loads(report.read_text(encoding="utf-8"))["cells"]


def test_a_recorded_golden_holds_each_parameters_sha256_as_schema_3(recorded: Recorded,
                                                                     tmp_path: Path) -> None:
    manifest = json.loads(recorded.manifest.read_text(encoding="utf-8"))
    assert manifest["schema"] == "harness.golden/3"
    assert list(manifest["parameters_sha256"]) == ["gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0",
                                                   "gru.bias_hh_l0", "head.weight", "head.bias"]
    assert recorded.store.load(recorded.config_id).parameters_sha256 == manifest["parameters_sha256"]


def test_one_recurrent_weight_moved_by_1e_2_is_named_in_a_drift(cli: Cli, recorded: Recorded,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NUDGE, "gru.weight_hh_l0")
    result, cells = run_json(cli, tmp_path, *recorded.select)
    assert result.exit_code == 1, result.out + result.err
    assert [(cell["verdict"], cell["cause"], cell["weights_changed"]) for cell in cells] == [
        ("DRIFT", "weights changed", ["gru.weight_hh_l0"])] * 2
    assert f"{recorded.config_id} x eager: DRIFT (tolerance atol=2e-06 rtol=1e-05); cause: weights changed " \
           "(gru.weight_hh_l0)" in result.out


def test_one_recurrent_weight_moved_is_named_when_the_cell_still_passes(
        cli: Cli, recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NUDGE, "gru.weight_hh_l0")
    result, cells = run_json(cli, tmp_path, *recorded.select, "--atol", "1e-4", "--rtol", "1e-4")
    assert result.exit_code == 0, result.out + result.err
    assert [(cell["verdict"], cell["cause"], cell["weights_changed"]) for cell in cells] == [
        ("close", None, ["gru.weight_hh_l0"])] * 2
    warnings = [line for line in result.out.splitlines() if "weights differ" in line]
    assert warnings == [f"Warning: {recorded.config_id}: weights differ from the golden's, yet it passes on eager, "
                        "torchscript-script; changed: gru.weight_hh_l0"]


def test_unchanged_weights_name_nothing(cli: Cli, recorded: Recorded, tmp_path: Path) -> None:
    result, cells = run_json(cli, tmp_path, *recorded.select)
    assert result.exit_code == 0, result.out + result.err
    assert [cell["weights_changed"] for cell in cells] == [None, None] and "weights differ" not in result.out


def test_a_schema_2_golden_of_changed_weights_says_it_cannot_name_them(
        cli: Cli, recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same golden written as harness.golden/2 (no per-parameter hashes): it loads and runs; changed
    weights are still a cause, and the report says why no parameter is named."""
    path = recorded.manifest
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["parameters_sha256"]
    path.write_text(json.dumps({**manifest, "schema": "harness.golden/2"}), encoding="utf-8")
    assert run_json(cli, tmp_path, *recorded.select)[0].exit_code == 0
    monkeypatch.setenv(NUDGE, "gru.weight_hh_l0")
    result, cells = run_json(cli, tmp_path, *recorded.select)
    assert result.exit_code == 1, result.out + result.err
    assert [(cell["cause"], cell["weights_changed"]) for cell in cells] == [("weights changed", [])] * 2
    assert ("cause: weights changed (the golden predates per-parameter sha256 (harness.golden/3), so no "
            "parameter can be named)") in result.out


@pytest.mark.parametrize(("schema", "parameters", "problem"), [
    pytest.param("harness.golden/3", None, "'parameters_sha256' is a required property", id="3-without"),
    pytest.param("harness.golden/2", {"gru.weight_hh_l0": "0" * 64}, "parameters_sha256", id="2-with"),
    pytest.param("harness.golden/3", {"gru.weight_hh_l0": "not a sha"}, "does not match", id="bad-sha"),
])
def test_a_manifest_whose_parameters_disagree_with_its_schema_is_one_golden_error(
        recorded: Recorded, tmp_path: Path, schema: str, parameters: dict[str, str] | None,
        problem: str) -> None:
    manifest = json.loads(recorded.manifest.read_text(encoding="utf-8"))
    manifest.pop("parameters_sha256")
    extra = {} if parameters is None else {"parameters_sha256": parameters}
    recorded.manifest.write_text(json.dumps({**manifest, "schema": schema, **extra}), encoding="utf-8")
    with pytest.raises(GoldenError, match=problem):
        recorded.store.load(recorded.config_id)


def test_a_committed_schema_2_golden_still_runs(cli: Cli, golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    directory = golden_copy(REFERENCE_ID)
    assert json.loads(GoldenStore(directory).manifest_path(REFERENCE_ID).read_text())["schema"] == "harness.golden/2"
    assert GoldenStore(directory).load(REFERENCE_ID).parameters_sha256 == {}
    result, cells = run_json(cli, tmp_path, "--config", REFERENCE_ID, "--golden-dir", str(directory),
                             "--backend", "eager")
    assert result.exit_code == 0, result.out + result.err
    assert [(cell["verdict"], cell["weights_changed"]) for cell in cells] == [("identical", None)]


def report_of(*cells: CellResult) -> RunReport:
    return RunReport(suite="s.toml", golden_dir="golden", config_ids=tuple(dict.fromkeys(c.config_id for c in cells)),
                     backends=tuple(dict.fromkeys(c.backend for c in cells)), cells=cells,
                     environment=current_environment(torch_threads=1))


MANY = WeightsChange(parameters=tuple(f"layer{index}.weight" for index in range(5)))


def test_many_changed_parameters_name_three_then_how_many_more() -> None:
    report = report_of(CellResult(config_id="m", backend="eager", verdict=Verdict.CLOSE, weights_changed=MANY),
                       CellResult(config_id="d", backend="eager", verdict=Verdict.DRIFT, weights_changed=MANY,
                                  cause=Cause.INPUTS))
    lines = report_lines(report)
    assert ("Warning: m: weights differ from the golden's, yet it passes on eager; changed: layer0.weight, "
            "layer1.weight, layer2.weight and 2 more") in lines
    assert "    weights differ from the golden's: layer0.weight, layer1.weight, layer2.weight and 2 more" in lines
    markdown = run_markdown(report)
    assert "### Weights changed" in markdown and "yet it passes on eager; changed: layer0.weight" in markdown


def test_a_parameter_name_cannot_forge_report_lines() -> None:
    forged = WeightsChange(parameters=("evil\nOK: 0 cells",))
    lines = report_lines(report_of(CellResult(config_id="m", backend="eager", verdict=Verdict.IDENTICAL,
                                              weights_changed=forged)))
    assert not any(line.startswith("OK: 0 cells") for line in lines)
