"""`harness probe --isa`: each cell in fresh processes under CPU-dispatch settings (harness.session.isa_probe), its
report (harness.reports.isa), checked against a direct run of eager torch under the same environment variables."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from harness.errors import EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_OK
from harness.judging.compare import compare_outputs
from harness.model.environment import Environment
from harness.model.tolerance import BITWISE
from harness.reports.isa import IsaCell, IsaOutcome, IsaReport, IsaSetting, isa_document, isa_json, isa_lines
from harness.session.isa_probe import DISPATCH_VARIABLES, _run_worker, dispatch_settings
from harness.verdicts import Verdict
from tests.conftest import CliResult, write_suite

HARNESS = (sys.executable, "-m", "harness")
CONFIGS = ("gru-h8-s0", "lstm-h8-s0")
# The eager outputs of the given configs under this process's environment, straight from torch: no session, no
# worker, no judging. Keys are "<config>|<output name>".
DIRECT = """
import sys
import numpy as np
import torch
from harness.backends import get_backend
from harness.model.case import build_case
from harness.model.suite import load_suite

torch.set_num_threads(1)
arrays = {}
for config in load_suite(None).select(sys.argv[2:]):
    case = build_case(config)
    outputs = get_backend("eager").prepare(case).run(case.inputs)
    arrays.update({f"{config.id}|{name}": array for name, array in outputs.items()})
np.savez(sys.argv[1], **arrays)
"""


def _direct_outputs(settings: list[dict[str, str]], tmp_path: Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """setting label -> config id -> eager outputs, each setting computed by a fresh interpreter of its own."""
    clean = {name: value for name, value in os.environ.items() if name not in DISPATCH_VARIABLES}
    started = []
    for index, setting in enumerate(settings):
        environment = {**clean, **({setting["variable"]: setting["value"]} if setting["variable"] else {})}
        path = tmp_path / f"direct-{index}.npz"
        started.append((setting["label"], path, subprocess.Popen([sys.executable, "-c", DIRECT, str(path), *CONFIGS],
                                                                 env=environment)))
    found: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for label, path, process in started:
        assert process.wait(timeout=120) == 0, label
        with np.load(path) as archive:
            for key in archive.files:
                config_id, name = key.split("|")
                found.setdefault(label, {}).setdefault(config_id, {})[name] = archive[key]
    return found


def test_the_settings_that_move_bits_are_named_and_agree_with_a_direct_check(
        tmp_path: Path, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(*CONFIGS)
    report_path = tmp_path / "isa.json"
    command = [*HARNESS, "probe", "--isa", *(f for c in CONFIGS for f in ("--config", c)), "--backend", "eager",
               "--golden-dir", str(golden), "--json", str(report_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    document = json.loads(report_path.read_text(encoding="utf-8"))
    assert document["schema"] == "harness.isa/1"
    run = [s for s in document["settings"] if not s["skipped"]]  # the baseline first
    assert run[0]["label"] == "baseline (none set)" and len(run) >= 4
    direct = _direct_outputs(run, tmp_path)
    baseline = direct[run[0]["label"]]
    moved = 0
    for cell in document["cells"]:
        config_id = cell["config"]
        assert cell["golden_capability"] and cell["baseline"]["golden"] == "passes"
        block = done.stdout.split(f"{config_id} x eager: ")[1].split("\n\n")[0]
        for outcome in cell["outcomes"]:
            comparisons = compare_outputs(baseline[config_id], direct[outcome["setting"]][config_id], BITWISE)
            same = all(comparison.passed for comparison in comparisons)
            assert outcome["bitwise"] is same, (config_id, outcome["setting"])
            assert outcome["max_ulps"] == (0 if same else max(c.max_ulps for c in comparisons))
            assert outcome["golden"] == "passes"
            if not same:  # the terminal names the setting and by how much, tied to the golden
                moved += 1
                assert f"under {outcome['setting']}" in block
                assert f"moves {outcome['max_ulps']} ulps" in block and "still passes the golden" in block
        assert cell["portable"] is (cell["max_ulps"] == 0)
    # Without a setting that moves bits the agreement above would say nothing: ATen's DEFAULT kernels do move them.
    assert moved, done.stdout
    assert "Need a tolerance:" in done.stdout and "exit 0" in done.stdout


def test_a_setting_that_breaks_a_zero_tolerance_golden_fails_the_probe(
        tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> None:
    suite = write_suite(tmp_path / "suite.toml", 'cell = "gru"\natol = 0.0\nrtol = 0.0')
    golden = tmp_path / "golden"
    assert cli("record", "--suite", str(suite), "--golden-dir", str(golden), "--config", "gru-h8-s0",
               "--backend", "eager").exit_code == EXIT_OK
    # Two settings keep it quick: one that moves this cell's bits, one that does not.
    monkeypatch.setattr("harness.session.isa_probe.dispatch_settings", lambda environment: (
        IsaSetting(variable="ATEN_CPU_CAPABILITY", value="default"), IsaSetting(variable="MKL_CBWR", value="AVX2")))
    result = cli("probe", "--isa", "--suite", str(suite), "--golden-dir", str(golden), "--config", "gru-h8-s0",
                 "--backend", "eager")
    assert result.exit_code == EXIT_DRIFT, result.out + result.err
    assert "under ATEN_CPU_CAPABILITY=default (ATen ran DEFAULT): moves" in result.out
    assert "and FAILS the golden (DRIFT" in result.out
    assert "bitwise under the other 1: MKL_CBWR=AVX2" in result.out
    assert "FAILED: the golden fails for gru-h8-s0 x eager under ATEN_CPU_CAPABILITY=default; exit 1" in result.out


def test_an_unknown_config_is_one_line_and_exit_2(cli: Callable[..., CliResult]) -> None:
    result = cli("probe", "--isa", "--config", "no-such-config")
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.err.strip().count("\n") == 0 and "unknown config 'no-such-config'" in result.err


def test_a_worker_past_its_timeout_is_killed_and_said(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    run = _run_worker(command, IsaSetting(variable="MKL_CBWR", value="AUTO"), tmp_path, timeout=0.5)
    assert time.monotonic() - started < 30
    assert run.failure == "its process ran past 0.5 s and was killed"
    assert not run.cells


# The settings a machine is offered, from its fingerprint.

def _environment(**fields: object) -> Environment:
    values: dict[str, object] = {"packages": {}, "python": "3.11", "platform": "linux", "machine": "x86_64",
                                 "cpu": "test", "cpu_flags": ("avx", "avx2", "fma", "avx512f"), "cpu_count": 2,
                                 "torch_threads": 1, "cuda": "none", "cpu_capability": "AVX512",
                                 "onednn": "v3.12.0", "mkl": "2024.2"}
    return Environment(**{**values, **fields})  # type: ignore[arg-type]


def test_settings_the_cpu_or_build_cannot_take_are_skipped_with_why() -> None:
    full = {s.label: s.skipped for s in dispatch_settings(_environment())}
    assert len(full) == 9 and not any(full.values())
    avx2_only = {s.label: s.skipped for s in dispatch_settings(_environment(cpu_flags=("avx", "avx2", "fma")))}
    assert avx2_only["ATEN_CPU_CAPABILITY=avx512"] == "this CPU lacks avx512f"
    assert avx2_only["ONEDNN_MAX_CPU_ISA=AVX512_CORE"] == "this CPU lacks avx512f"
    assert not avx2_only["ATEN_CPU_CAPABILITY=avx2"]
    no_mkl = {s.label: s.skipped for s in dispatch_settings(_environment(mkl="none"))}
    assert no_mkl["MKL_CBWR=AUTO"] == "torch was built without MKL" and not no_mkl["ONEDNN_MAX_CPU_ISA=SSE41"]
    arm = {s.label: s.skipped for s in dispatch_settings(_environment(machine="aarch64", cpu_flags=("asimd",)))}
    assert not arm["ATEN_CPU_CAPABILITY=default"]
    assert arm["MKL_CBWR=COMPATIBLE"] == "an x86 level; this machine is aarch64"


# The report: pure values in, lines and a schema-checked document out.

BASE = IsaSetting(variable="")
DEFAULT = IsaSetting(variable="ATEN_CPU_CAPABILITY", value="default")
AVX2 = IsaSetting(variable="ATEN_CPU_CAPABILITY", value="avx2")


def _outcome(setting: IsaSetting, **fields: object) -> IsaOutcome:
    values: dict[str, object] = {"capability": "AVX512", "status": "computed", "bitwise": True,
                                 "verdict": Verdict.IDENTICAL}
    return IsaOutcome(setting=setting, **{**values, **fields})  # type: ignore[arg-type]


def _report(*outcomes: IsaOutcome, baseline: IsaOutcome | None = None, golden: str = "AVX512") -> IsaReport:
    cell = IsaCell(config_id="gru-h8-s0", backend="eager", golden_capability=golden,
                   baseline=baseline or _outcome(BASE), outcomes=outcomes)
    skipped = IsaSetting(variable="MKL_CBWR", value="AUTO", skipped="torch was built without MKL")
    return IsaReport(machine={"cpu": "test", "cpu_capability": "AVX512"}, settings=(BASE, DEFAULT, AVX2, skipped),
                     cleared=("MKL_CBWR=AVX2",), cells=(cell,))


def test_a_moved_setting_that_still_passes_is_named_with_its_ulps_and_exit_0() -> None:
    moved = _outcome(DEFAULT, capability="DEFAULT", bitwise=False, max_ulps=3, max_abs=2e-7, mismatched=4, total=80,
                     verdict=Verdict.CLOSE, golden_ulps=3)
    report = _report(moved, _outcome(AVX2))
    text = "\n".join(isa_lines(report))
    assert ("gru-h8-s0 x eager: golden recorded under AVX512; the baseline here (AVX512) passes it (identical)"
            in text)
    assert ("under ATEN_CPU_CAPABILITY=default (ATen ran DEFAULT): moves 3 ulps (4/80 values differ, max |d| 2.0e-07) "
            "and still passes the golden (close, 3 ulps from it)") in text
    assert "bitwise under the other 1: ATEN_CPU_CAPABILITY=avx2" in text
    assert "skipped: MKL_CBWR=AUTO (torch was built without MKL)" in text
    assert "cleared in every process (set in this environment): MKL_CBWR=AVX2" in text
    assert "Need a tolerance: gru-h8-s0 x eager (up to 3 ulps, under ATEN_CPU_CAPABILITY=default)" in text
    assert report.exit_code == EXIT_OK and text.endswith("OK: every setting still passes the golden; exit 0")
    document = json.loads(isa_json(report))
    assert document["summary"] == {"portable": [], "need_tolerance": ["gru-h8-s0 x eager"], "failing": []}
    assert document["cells"][0]["outcomes"][0]["golden"] == "passes"


def test_portable_cells_failing_settings_and_missing_goldens() -> None:
    portable = _report(_outcome(DEFAULT), _outcome(AVX2))
    assert "Bitwise-portable across the 2 tested settings: gru-h8-s0 x eager" in isa_lines(portable)
    failing = _report(_outcome(DEFAULT, bitwise=False, max_ulps=9, verdict=Verdict.DRIFT, verdict_reason="off"))
    assert failing.exit_code == EXIT_DRIFT
    assert "FAILED: the golden fails for gru-h8-s0 x eager under ATEN_CPU_CAPABILITY=default; exit 1" in isa_lines(
        failing)
    missing = _report(_outcome(DEFAULT, verdict=Verdict.MISSING), baseline=_outcome(BASE, verdict=Verdict.MISSING),
                      golden="")
    assert missing.exit_code == EXIT_OK
    assert "gru-h8-s0 x eager: no golden; the baseline here (AVX512): no golden" in isa_lines(missing)
    refused = _report(_outcome(DEFAULT, verdict=Verdict.CORRUPT), baseline=_outcome(BASE, verdict=Verdict.CORRUPT))
    assert refused.exit_code == EXIT_BAD_INPUT
    crashed = _report(_outcome(DEFAULT, status="error", detail="its process exited -9: ", bitwise=None,
                               verdict=None))
    assert crashed.exit_code == EXIT_DRIFT and crashed.cells[0].failing
    for report in (portable, failing, missing, refused, crashed):
        isa_json(report)  # each validates against harness/reports/schemas/isa.schema.json


def test_a_document_the_schema_rejects_is_a_bug_not_a_report() -> None:
    report = _report(_outcome(DEFAULT))
    broken = dataclasses.replace(report, cells=(dataclasses.replace(
        report.cells[0], baseline=_outcome(BASE, status="weird")),))  # type: ignore[arg-type]
    assert isa_document(broken)["cells"][0]["baseline"]["status"] == "weird"
    with pytest.raises(RuntimeError, match=r"does not match harness\.isa/1"):
        isa_json(broken)
