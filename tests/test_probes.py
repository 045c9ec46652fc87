"""Determinism probes on real backends, a nondeterministic double, and an ignored seed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from harness.model.config import RnnConfig
from harness.session import probes
from harness.session.core import Session
from harness.session.probes import run_probes
from harness.session.settings import ProbeSettings, Settings
from harness.verdicts import ProbeVerdict
from tests.conftest import REFERENCE_ID, CliResult
from tests.doubles import registered_doubles

Cli = Callable[..., CliResult]


@pytest.fixture(autouse=True)
def doubles() -> Iterator[None]:
    with registered_doubles():
        yield


def test_every_probe_passes_on_the_reference_case_including_fresh_processes() -> None:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    session = Session(Settings(configs=(REFERENCE_ID,), backends=("eager", "onnxruntime-legacy")))
    results = run_probes(session, ProbeSettings())
    verdicts = {(r.backend, r.probe): r.verdict.value for r in results}
    assert verdicts[("eager", "repeat")] == "pass"
    assert verdicts[("eager", "fresh-process")] == "pass"
    assert verdicts[("onnxruntime-legacy", "fresh-process")] == "pass"
    assert verdicts[("eager", "torch-threads")] == "pass" and verdicts[("eager", "deterministic")] == "pass"
    assert verdicts[("onnxruntime-legacy", "ort-threads")] == "pass"
    assert verdicts[("onnxruntime-legacy", "torch-threads")] == "n/a"
    assert verdicts[("(model)", "seed")] == "pass"
    assert not any(r.failing for r in results)
    # probes leave global state as they found it
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == deterministic


def test_a_nondeterministic_backend_fails_the_repeat_probe(cli: Cli, tmp_path: Path) -> None:
    report = tmp_path / "probes.json"
    result = cli("probe", "--config", REFERENCE_ID, "--backend", "eager", "--backend", "test-noisy",
                 "--no-fresh-process", "--json", str(report))
    assert result.exit_code == 1
    assert f"{REFERENCE_ID} x test-noisy: probe repeat: FAIL: 5 runs in one process: differ by up to" in result.out
    document = json.loads(report.read_text())
    assert document["schema"] == "harness.probes/1"
    failing = [p for p in document["probes"] if p["failing"]]
    assert {(p["backend"], p["probe"]) for p in failing} >= {("test-noisy", "repeat")}
    assert not any(p["backend"] == "eager" for p in failing)


def test_an_ignored_seed_fails_the_seed_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = probes.build_module
    monkeypatch.setattr(probes, "build_module", lambda config: real_build(RnnConfig(cell=config.cell)))
    result = probes._seed_probe(RnnConfig(seed=3))
    assert result.verdict is ProbeVerdict.FAIL and "the seed is ignored" in result.detail


def test_run_with_probes_reports_both(cli: Cli, golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy(REFERENCE_ID)
    report = tmp_path / "report.json"
    result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--backend", "eager",
                 "--probes", "--no-fresh-process", "--json", str(report))
    assert result.exit_code == 0
    assert "Determinism probes" in result.out
    assert {p["probe"] for p in json.loads(report.read_text())["probes"]} >= {"repeat", "seed", "torch-threads"}
