"""The reports a person reads (issue 19): a passing run fits a screen, one cause is one finding, every failure
says how to accept it, NONDETERMINISTIC names the bitwise rule, a refused golden costs its own cells only, merge
tells unsupported, slow and unavailable apart. Handmade results: no backends, no torch."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np

from harness.judging.compare import compare_outputs
from harness.judging.results import CellResult, WeightsChange
from harness.model.tolerance import BITWISE
from harness.reports.ci_files import run_markdown
from harness.reports.colour import colour_wanted, coloured
from harness.reports.findings import accept_command, findings
from harness.reports.json_report import report_document, schema_problems
from harness.reports.probes import probe_lines
from harness.reports.summary import folded_table
from harness.reports.terminal import report_lines
from harness.verdicts import Cause, ProbeVerdict, Verdict
from tests.test_reports import DRIFT, IDENTICAL, TIGHT, cell, report, tensors_with

RECORD = "harness record --suite s.toml --golden-dir g"
BACKENDS = ("eager", "torchscript", "torch-export", "torch-compile", "onnxruntime-legacy", "onnxruntime-dynamo",
            "onnx-reference-legacy", "onnx-reference-dynamo", "other")


def passing_suite() -> tuple[CellResult, ...]:
    """74 configs x 9 backends: identical, close, unsupported with six reasons, slow."""
    cells = []
    for number in range(74):
        config_id = f"lstm-h8-l2-bi-gauss-t6b4-config-{number:02d}"
        for index, backend in enumerate(BACKENDS):
            if index == 3:
                cells.append(cell(config_id, backend, Verdict.SLOW, reason="left out"))
            elif index >= 6 and number % 3 == 0:
                cells.append(cell(config_id, backend, Verdict.UNSUPPORTED,
                                  reason=f"limitation {number % 6} of {backend} (observed: Error {number})"))
            else:
                cells.append(dataclasses.replace(IDENTICAL, config_id=config_id, backend=backend))
    return tuple(cells)


def test_a_passing_run_of_74_configs_on_9_backends_fits_40_lines_of_120_columns() -> None:
    run = report(passing_suite(), hints={"record": RECORD})
    lines = report_lines(run)
    assert len(lines) <= 40 and max(map(len, lines)) <= 120, lines
    assert lines[-1].startswith("OK: 666 cells") and run.exit_code == 0
    assert any(line.split()[:2] == ["eager", "74"] for line in lines)  # one summary line per backend
    unsupported = [line for line in lines if line.startswith("   ") and "limitation" in line]
    assert len(unsupported) == 6 and all("observed" not in line for line in unsupported)  # one line per reason
    assert not any(line.startswith("lstm-h8-l2-bi-gauss-t6b4-config-00 ") for line in lines)  # no table


def test_the_table_comes_with_table_or_verbose_folded_to_the_width() -> None:
    run = report(passing_suite())
    for lines in (report_lines(run, table=True, width=100), report_lines(run, verbose=True, width=100)):
        assert sum(1 for line in lines if "identic" in line) >= 74  # a row per config, folded
    table = folded_table(run, width=100)
    assert max(map(len, table)) <= 100 and len(table) > 74


def weights_cell(config_id: str, backend: str) -> CellResult:
    return dataclasses.replace(DRIFT, config_id=config_id, backend=backend, cause=Cause.WEIGHTS,
                               weights_changed=WeightsChange(parameters=("decoder.weight",)))


def test_one_weights_change_is_one_finding_listing_its_cells_and_the_accept_command() -> None:
    cells = tuple(weights_cell(config_id, backend) for config_id in ("char-a", "char-b")
                  for backend in ("eager", "torchscript", "onnxruntime"))
    run = report(cells, hints={"record": RECORD})
    found = findings(run)
    assert len(found) == 1 and len(found[0].cells) == 6
    lines = report_lines(run)
    headings = [line for line in lines if line.startswith("[1] weights changed since the golden (decoder.weight)")]
    assert headings == ["[1] weights changed since the golden (decoder.weight): 6 cells (DRIFT): "
                        "char-a (eager, torchscript, onnxruntime); char-b (eager, torchscript, onnxruntime)"]
    assert sum(1 for line in lines if line.startswith("  char-") and ": DRIFT (tolerance" in line) == 1
    assert sum(1 for line in report_lines(run, verbose=True) if ": DRIFT (tolerance" in line) == 6
    accept = f"{RECORD} --force --config char-a --config char-b"
    assert accept_command(run) == accept and any(line.endswith(accept) for line in lines)
    assert accept in run_markdown(run)
    document = report_document(run)
    assert document["accept_command"] == accept and schema_problems(document) == []
    assert document["findings"][0]["cells"][0] == ["char-a", "eager"]


def test_a_check_against_the_live_reference_has_nothing_to_accept() -> None:
    assert accept_command(report((IDENTICAL, DRIFT), live_reference=True)) == ""
    assert accept_command(report((IDENTICAL,))) == ""


def test_nondeterministic_names_the_bitwise_rule_and_where_the_runs_differ_without_a_histogram() -> None:
    first = {"grad": np.array([0.1, 0.2, 0.3], dtype=np.float64)}
    second = {"grad": first["grad"].copy()}
    second["grad"][2] = np.nextafter(np.nextafter(first["grad"][2], 1.0), 1.0)  # 2 ulps away
    repeat = compare_outputs(first, second, BITWISE)
    noisy = cell("gru-grad", "eager", Verdict.NONDETERMINISTIC, tolerance=TIGHT, tensors=tensors_with(0.0),
                 repeat=repeat)
    lines = report_lines(report((noisy,)))
    joined = "\n".join(lines)
    assert "NONDETERMINISTIC: two runs of the same prepared model must be bitwise equal" in joined
    assert "(2 ulps of float64) in grad" in joined and "at index (2,)" in joined
    assert "histogram" not in joined and "outside tolerance" not in joined and "atol" not in joined


def test_a_corrupt_golden_costs_its_own_cells_and_exits_2_with_the_re_record_command() -> None:
    reason = f"g/bad.json: sha256 mismatch; record it again: {RECORD} --force --config bad"
    cells = (cell("bad", "eager", Verdict.CORRUPT, reason=reason), cell("bad", "onnxruntime", Verdict.CORRUPT,
                                                                      reason=reason),
             dataclasses.replace(IDENTICAL, config_id="good-1"), dataclasses.replace(IDENTICAL, config_id="good-2"))
    run = report(cells, hints={"record": RECORD})
    assert run.exit_code == 2 and report_document(run)["exit_code"] == 2
    lines = report_lines(run)
    assert lines[-1].startswith("FAILED: 4 cells: 2 identical, 2 CORRUPT;") and lines[-1].endswith("exit 2")
    assert any(line.startswith("[1] golden of bad refused (corrupt): 2 cells (CORRUPT)") for line in lines)
    assert any(reason in line for line in lines)
    assert any(line.endswith(f"{RECORD} --force --config bad") for line in lines)
    assert any(line.split()[:3] == ["eager", "2", "0"] for line in lines)  # the other configs are judged


def test_probes_say_one_line_per_failing_cell() -> None:
    from harness.judging.results import PROBES, ProbeResult

    results = tuple(ProbeResult(config_id="rnn", backend="torch-export", probe=probe, verdict=ProbeVerdict.ERROR,
                                detail="cannot prepare: TypeError: x") for probe in PROBES[:6])
    failures = [line for line in probe_lines(results) if line.startswith("  rnn x torch-export")]
    assert failures == ["  rnn x torch-export: probes " + ", ".join(PROBES[:6]) + ": error: cannot prepare: "
                        "TypeError: x"]


class _Stream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_only_at_a_terminal_without_no_color_and_the_text_unchanged() -> None:
    terminal, pipe = _Stream(tty=True), _Stream(tty=False)
    assert colour_wanted(terminal, {}) and colour_wanted(terminal, {"NO_COLOR": ""})  # empty: unset (no-color.org)
    assert not colour_wanted(terminal, {"NO_COLOR": "1"}) and not colour_wanted(terminal, {"TERM": "dumb"})
    assert not colour_wanted(pipe, {})  # CI logs, pipes and files get plain text
    lines = report_lines(report((IDENTICAL, DRIFT, cell("bad", "eager", Verdict.CORRUPT, reason="refused"))))
    painted = coloured(lines)
    assert [re.sub(r"\x1b\[\d+m", "", line) for line in painted] == lines
    assert painted[-1].startswith("\x1b[31mFAILED\x1b[0m: 3 cells:") and "\x1b[31mCORRUPT\x1b[0m" in painted[-1]
    assert any("\x1b[31mDRIFT\x1b[0m" in line for line in painted)
    passing = "OK: 1 cell: 1 identical; 0.1 s; exit 0"
    assert coloured([passing]) == [f"\x1b[32mOK\x1b[0m{passing[2:]}"]


def test_merge_tells_unsupported_slow_and_unavailable_apart(tmp_path: Path) -> None:
    from harness.reports.ci_files import merge_markdown
    from harness.reports.merge import merge_lines, merge_reports

    def not_run(config_id: str, verdict: Verdict) -> CellResult:
        return cell(config_id, "onnxruntime", verdict, reason=f"{verdict.value} here")

    paths = []
    for label, unavailable in (("linux", Verdict.UNAVAILABLE), ("mac", Verdict.UNSUPPORTED)):
        cells = (IDENTICAL, not_run("rnn-h8-s0", Verdict.UNSUPPORTED), dataclasses.replace(IDENTICAL, config_id="gru"),
                 not_run("gru", Verdict.SLOW), dataclasses.replace(IDENTICAL, config_id="lstm"),
                 not_run("lstm", Verdict.UNAVAILABLE), dataclasses.replace(IDENTICAL, config_id="mixed"),
                 not_run("mixed", unavailable))
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps(report_document(report(cells, label=label))), encoding="utf-8")
        paths.append(path)
    merged = merge_reports(paths)
    rows = {line.split()[0]: line.split()[1:] for line in merge_lines(merged)
            if line.split()[:1] and line.split()[0] in ("rnn-h8-s0", "gru", "lstm", "mixed")}
    assert rows == {"rnn-h8-s0": ["=", "unsupported"], "gru": ["=", "slow"], "lstm": ["=", "unavailable"],
                    "mixed": ["=", "-"]}  # "-": the environments give different reasons
    markdown = merge_markdown(merged)
    assert all(f"| {mark}" in markdown for mark in ("unsupported", "slow", "unavailable"))


def test_a_golden_that_moved_is_one_finding_for_its_config_not_one_per_backend() -> None:
    """Same inputs and weights, other numbers on every backend: the golden (or a shared kernel) moved."""
    backends = ("eager", "torchscript-script", "torch-export", "onnxruntime-legacy", "onnxruntime-dynamo")
    moved = tuple(dataclasses.replace(DRIFT, config_id="gru-h8-s0", backend=backend, cause=Cause.COMPUTE)
                  for backend in backends)
    other = dataclasses.replace(DRIFT, config_id="rnn-h8-s0", backend="eager", cause=Cause.COMPUTE)
    found = findings(report((*moved, other), hints={"record": RECORD}))
    assert [len(finding.cells) for finding in found] == [5, 1]
    assert found[0].heading(full=False) == ("gru-h8-s0 computes otherwise than its golden, with the golden's inputs "
                                            "and weights: 5 cells (DRIFT): gru-h8-s0 (5 backends)")
    many = tuple(dataclasses.replace(cell, config_id=f"c{index}") for index in range(5) for cell in moved[:1])
    assert sum(len(finding.cells) for finding in findings(report(many))) == 5  # one finding per config
