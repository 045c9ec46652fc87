"""Direct tests of the reports (terminal, JSON, JUnit/Markdown, merge) on handmade results: no backends, no torch."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from harness.judging.compare import TensorComparison, compare_outputs
from harness.judging.results import CellResult, RunReport
from harness.model.environment import Environment
from harness.model.tolerance import Tolerance
from harness.reports.ci_files import junit_xml, run_markdown
from harness.reports.json_report import report_document, report_json, schema_problems
from harness.reports.merge import merge_lines, merge_reports
from harness.reports.terminal import failure_lines, report_lines, summary_line
from harness.verdicts import Cause, Verdict

TIGHT = Tolerance(atol=1e-6, rtol=0.0)
ENVIRONMENT = Environment(
    packages={"harness": "0.1", "torch": "2.5.0", "numpy": "2.1.0", "onnx": "1.17", "onnxruntime": "1.20"},
    python="3.12.1", platform="Linux-x86_64", machine="x86_64", cpu="Test CPU", cpu_flags=("avx", "avx2"),
    cpu_count=4, torch_threads=1, cuda="none",
)
EXPECTED = {"output": np.array([[0.5, -0.25], [0.125, 1.0]], dtype=np.float32)}


def tensors_with(delta: float) -> tuple[TensorComparison, ...]:
    """The comparison of EXPECTED with one element moved by delta, under a tight tolerance."""
    actual = {"output": EXPECTED["output"].copy()}
    actual["output"][1, 0] += np.float32(delta)
    return compare_outputs(EXPECTED, actual, TIGHT)


def cell(config_id: str, backend: str, verdict: Verdict, **fields: object) -> CellResult:
    return CellResult(config_id=config_id, backend=backend, verdict=verdict, **fields)  # type: ignore[arg-type]


def report(cells: tuple[CellResult, ...], **fields: object) -> RunReport:
    """A report over the configs and backends its cells name, in first-seen order."""
    values: dict[str, object] = {
        "suite": "suites/test.toml", "golden_dir": "golden", "environment": ENVIRONMENT, "wall_seconds": 1.25,
        "config_ids": tuple(dict.fromkeys(c.config_id for c in cells)),
        "backends": tuple(dict.fromkeys(c.backend for c in cells)), "cells": cells, **fields,
    }
    return RunReport(**values)  # type: ignore[arg-type]


IDENTICAL = cell("rnn-h8-s0", "eager", Verdict.IDENTICAL, tolerance=TIGHT, tensors=tensors_with(0.0))
DRIFT = cell("rnn-h8-s0", "onnxruntime", Verdict.DRIFT, tolerance=TIGHT, tensors=tensors_with(1e-3),
             cause=Cause.COMPUTE)


def text(lines: list[str]) -> str:
    return "\n".join(lines)


def test_one_config_one_backend_one_cell_in_the_singular() -> None:
    lines = report_lines(report((IDENTICAL,)))
    assert lines[0] == "harness: 1 config x 1 backend; suite suites/test.toml; golden golden"
    assert "torch 2.5.0, onnxruntime 1.20, onnx 1.17, numpy 2.1.0; torch threads 1; Test CPU" in lines[1]
    assert lines[-1] == "OK: 1 cell: 1 identical; 1.2 s; exit 0"


def test_plurals_for_several_configs_backends_and_cells() -> None:
    cells = (IDENTICAL, dataclasses.replace(IDENTICAL, config_id="gru-h8-s0", backend="onnxruntime"))
    run = report(cells)
    assert report_lines(run)[0].startswith("harness: 2 configs x 2 backends;")
    assert summary_line(run) == "OK: 2 cells: 2 identical; 1.2 s; exit 0"
    row = next(line for line in report_lines(run, table=True) if line.startswith("rnn-h8-s0"))
    assert row.split() == ["rnn-h8-s0", "identical", "-"]  # no onnxruntime cell for this config


def test_table_legend_and_cell_text() -> None:
    lines = report_lines(report((IDENTICAL, DRIFT)), table=True)
    row = next(line for line in lines if line.startswith("rnn-h8-s0"))
    assert DRIFT.max_ulps > 1000
    assert row.split() == ["rnn-h8-s0", "identical", "DRIFT", f"1.0e-03/{DRIFT.max_ulps}u"]
    assert any("verdict vs the golden" in line for line in lines)


def test_check_mode_legend_names_the_live_reference_and_not_the_golden() -> None:
    lines = report_lines(report((IDENTICAL,), live_reference=True, golden_dir="(live eager reference)"), table=True)
    assert "  each cell: verdict vs eager CPU computed in this run (the reference), max abs error/max ulps" in lines
    assert not any("golden" in line or "fingerprint" in line for line in lines)


def test_failures_section_details_a_drift() -> None:
    run = report((IDENTICAL, DRIFT), environment_changes={"rnn-h8-s0": ("torch 2.4.0 -> 2.5.0",)})
    lines = report_lines(run)
    assert "Failures (1 cell, 1 finding; one finding per cause):" in lines
    assert "  rnn-h8-s0 x onnxruntime: DRIFT (tolerance atol=1e-06 rtol=0); cause: compute changed " \
           "(same inputs and weights)" in lines
    assert "    environment since the golden: torch 2.4.0 -> 2.5.0" in lines
    detail = text(failure_lines(DRIFT))
    assert "output drift: 1/4 elements (25.0%) outside tolerance" in detail
    assert "worst at index (1, 0)" in detail and "would pass with atol >= " in detail
    assert summary_line(run).startswith("FAILED: 2 cells: 1 identical, 1 DRIFT;") and run.exit_code == 1


def test_upstream_notes_are_one_line_unless_verbose() -> None:
    notes = ("TracerWarning: converting a tensor to a Python boolean", "UserWarning: exporting GRU")
    cells = (dataclasses.replace(IDENTICAL, backend="onnxruntime", notes=notes),
             dataclasses.replace(IDENTICAL, config_id="gru-h8-s0", backend="onnxruntime", notes=notes[:1]))
    run = report(cells)
    short = report_lines(run)
    findings = [line for line in short if "Upstream findings" in line]
    assert findings == ["Upstream findings: 2 distinct warnings from torch / onnx / onnxruntime while preparing "
                        "onnxruntime (-v lists them)"]
    assert not any(note in text(short) for note in notes)
    verbose = report_lines(run, verbose=True)
    assert f"  onnxruntime (2 cells): {notes[0]}" in verbose
    assert f"  onnxruntime (1 cell): {notes[1]}" in verbose


def test_environment_changes_always_and_context_only_under_verbose() -> None:
    run = report((IDENTICAL,), environment_changes={"rnn-h8-s0": ("torch 2.4.0 -> 2.5.0",)},
                 environment_context={"rnn-h8-s0": ("python: 3.11.9 -> 3.12.1",)})
    short = report_lines(run)
    assert "Environment now vs. when the goldens were recorded (what can change bits):" in short
    assert "  1 golden: torch 2.4.0 -> 2.5.0" in short
    assert "python: 3.11.9" not in text(short)
    verbose = report_lines(run, verbose=True)
    assert "Other environment differences (context):" in verbose
    assert "  1 golden: python: 3.11.9 -> 3.12.1" in verbose


def test_missing_goldens_section_hint_and_exit_2() -> None:
    missing = (cell("gru-h8-s0", "eager", Verdict.MISSING, reason="no golden"),
               cell("gru-h8-s0", "onnxruntime", Verdict.MISSING, reason="no golden"))
    run = report((IDENTICAL, *missing), hints={"record": "harness record --suite suites/test.toml"})
    lines = report_lines(run)
    start = lines.index("Missing goldens (1 config; every other cell was judged; exit 2):")
    assert lines[start + 1:start + 3] == ["  gru-h8-s0",
                                          "  record them: harness record --suite suites/test.toml --config gru-h8-s0"]
    assert not any(line.startswith("Failures") for line in lines)  # MISSING is not a failure to detail
    assert run.exit_code == 2 and lines[-1].endswith("exit 2")


def test_exit_2_for_missing_wins_over_exit_1_for_drift() -> None:
    run = report((DRIFT, cell("gru-h8-s0", "eager", Verdict.MISSING)))
    assert run.exit_code == 2
    assert "Failures (1 cell, 1 finding; one finding per cause):" in report_lines(run)
    assert summary_line(run).startswith("FAILED:")


def test_stale_goldens_are_listed_without_failing() -> None:
    run = report((IDENTICAL,), stale=("lstm-h4-s1", "old-s0"), hints={"prune": "harness prune --golden-dir g"})
    lines = report_lines(run)
    start = lines.index("Stale goldens (2 goldens in golden used by no config of the suite; not failing):")
    assert lines[start + 1:start + 4] == ["  lstm-h4-s1", "  old-s0", "  list their files: harness prune "
                                          "--golden-dir g; delete them: harness prune --golden-dir g --yes"]
    assert run.exit_code == 0


def test_json_document_validates_and_passing_cells_drop_statistics() -> None:
    close = cell("rnn-h8-s0", "onnxruntime", Verdict.CLOSE, tolerance=Tolerance(atol=1e-2, rtol=0.0),
                 tensors=compare_outputs(EXPECTED, {"output": EXPECTED["output"] + np.float32(1e-3)},
                                         Tolerance(atol=1e-2, rtol=0.0)))
    drift = dataclasses.replace(DRIFT, config_id="gru-h8-s0")
    assert close.tensors[0].statistics is not None and drift.tensors[0].statistics is not None
    document = report_document(report((close, drift)))
    assert schema_problems(document) == []
    by_config = {c["config"]: c for c in document["cells"]}
    assert by_config["rnn-h8-s0"]["tensors"][0]["statistics"] is None
    assert by_config["rnn-h8-s0"]["tensors"][0]["max_abs"] == pytest.approx(1e-3, rel=1e-3)  # the numbers stay
    statistics = by_config["gru-h8-s0"]["tensors"][0]["statistics"]
    assert statistics["needed_atol"] == pytest.approx(1e-3, rel=1e-3)
    assert statistics["worst"][0]["index"] == [1, 0] and statistics["abs_error"]["max"] == statistics["needed_atol"]
    summary = document["summary"]
    assert (summary["cells"], summary["failing"]) == (2, 1)
    assert {v: n for v, n in summary["by_verdict"].items() if n} == {"close": 1, "DRIFT": 1}


def test_json_document_of_a_run_with_missing_goldens_validates() -> None:
    """MISSING cells (exit 2) are a documented outcome of a run: the report's own schema must accept them."""
    document = report_document(report((IDENTICAL, cell("gru-h8-s0", "eager", Verdict.MISSING))))
    assert document["exit_code"] == 2
    assert schema_problems(document) == []


def _refuse(constant: str) -> float:
    raise ValueError(f"not strict JSON: {constant}")


def test_report_json_is_strict_even_with_infinite_errors() -> None:
    """NaN against a number is an infinite error: written as the string "inf", never as Infinity."""
    actual = {"output": EXPECTED["output"].copy()}
    actual["output"][0, 1] = np.nan
    tensors = compare_outputs(EXPECTED, actual, TIGHT)
    broken = cell("rnn-h8-s0", "onnxruntime", Verdict.DRIFT, tolerance=TIGHT, tensors=tensors)
    assert math.isinf(broken.max_abs)
    document = json.loads(report_json(report((broken,))), parse_constant=_refuse)
    assert document["cells"][0]["max_abs"] == "inf"
    assert document["cells"][0]["tensors"][0]["max_abs"] == "inf"


def test_junit_has_one_testcase_per_cell() -> None:
    unsupported = cell("gru-h8-s0", "eager", Verdict.UNSUPPORTED, reason="no GRU here")
    error = cell("gru-h8-s0", "onnxruntime", Verdict.ERROR, reason="export crashed")
    root = ElementTree.fromstring(junit_xml(report((IDENTICAL, DRIFT, unsupported, error))))
    suite = root.find("testsuite")
    assert suite is not None
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "4", "failures": "1", "errors": "1", "skipped": "1"}
    cases = {(case.get("classname"), case.get("name")): case for case in suite.iter("testcase")}
    assert len(cases) == 4
    assert list(cases[("harness.rnn-h8-s0", "eager")]) == []
    failure = cases[("harness.rnn-h8-s0", "onnxruntime")].find("failure")
    assert failure is not None and failure.get("type") == "DRIFT" and "cause: compute changed" in (failure.text or "")
    skipped = cases[("harness.gru-h8-s0", "eager")].find("skipped")
    assert skipped is not None and skipped.get("message") == "unsupported: no GRU here"
    assert cases[("harness.gru-h8-s0", "onnxruntime")].find("error") is not None


def test_run_markdown_bolds_failures_and_lists_them() -> None:
    markdown = run_markdown(report((IDENTICAL, DRIFT), label="ci-linux", shard="1/2"))
    assert markdown.startswith("## harness: FAILED: 2 cells: 1 identical, 1 DRIFT;")
    assert "Environment `ci-linux`, shard `1/2`" in markdown
    assert "| `rnn-h8-s0` | identical | **DRIFT 1.0e-03/" in markdown
    assert "### Failures" in markdown and "rnn-h8-s0 x onnxruntime: DRIFT" in markdown


def write_shard(path: Path, cells: tuple[CellResult, ...], shard: str) -> Path:
    path.write_text(report_json(report(cells, label="ci", shard=shard)), encoding="utf-8")
    return path


def test_merge_unions_the_shards_of_one_environment(tmp_path: Path) -> None:
    first = write_shard(tmp_path / "1.json", (IDENTICAL,), "1/2")
    second_cell = dataclasses.replace(IDENTICAL, config_id="gru-h8-s0", outputs_sha256="abc")
    second = write_shard(tmp_path / "2.json", (second_cell,), "2/2")
    merged = merge_reports([first, second])
    assert list(merged.environments) == ["ci"] and merged.shards == {"ci": ("1/2", "2/2")}
    assert {(c.config, c.backend) for c in merged.cells} == {("rnn-h8-s0", "eager"), ("gru-h8-s0", "eager")}
    assert [row.config for row in merged.matrix] == ["rnn-h8-s0", "gru-h8-s0"]  # suite order: 1/2 first
    assert merged.missing_shards == {} and merged.exit_code == 0
    assert "INCOMPLETE" not in text(merge_lines(merged))


def test_merge_with_a_missing_shard_is_incomplete(tmp_path: Path) -> None:
    merged = merge_reports([write_shard(tmp_path / "1.json", (IDENTICAL,), "1/2")])
    assert merged.missing_shards == {"ci": ("2/2",)} and merged.exit_code == 1
    assert "  ci: INCOMPLETE, missing shards 2/2" in merge_lines(merged)


def test_slow_cells_are_listed_per_backend_and_a_mostly_slow_backend_names_what_it_ran() -> None:
    ids = ("a", "b", "c", "d")
    cells = tuple(CellResult(config_id=config_id, backend=backend, verdict=Verdict.SLOW)
                  for backend, slow_ids in (("torch-compile", ("b", "c", "d")), ("onnxruntime-dynamo", ("d",)))
                  for config_id in slow_ids)
    run = report(cells, config_ids=ids, backends=("torch-compile", "onnxruntime-dynamo"))
    assert "Left out as slow: 4 cells (torch-compile 3, onnxruntime-dynamo 1); --all runs them" in report_lines(run)
    lines = report_lines(run, verbose=True)
    start = lines.index("Left out as slow (4 cells; run with --all to include them):")
    assert lines[start + 1:start + 3] == ["  torch-compile (3 configs): every config but a",
                                          "  onnxruntime-dynamo (1 config): d"]
