"""ONNX Runtime and the reference evaluator on one export: who drifts alone names the runtime; both, the exporter."""

from __future__ import annotations

import pytest

from harness.judging.results import CellResult
from harness.judging.runtimes import with_runtime_findings
from harness.verdicts import Verdict

PAIRS = (("onnxruntime-legacy", "onnx-reference-legacy"),)
D, C, U = Verdict.DRIFT, Verdict.CLOSE, Verdict.UNSUPPORTED


def _cells(ort: Verdict, ref: Verdict) -> list[CellResult]:
    return [CellResult(config_id="c", backend="eager", verdict=Verdict.IDENTICAL),
            CellResult(config_id="c", backend="onnxruntime-legacy", verdict=ort),
            CellResult(config_id="c", backend="onnx-reference-legacy", verdict=ref)]


@pytest.mark.parametrize(("ort", "ref", "ort_finding", "ref_finding"), [
    (D, C, "runtime: onnx-reference-legacy computes the same exported model within tolerance, so onnxruntime-legacy "
           "computes it wrongly", ""),
    (C, D, "", "runtime: onnxruntime-legacy computes the same exported model within tolerance, so "
               "onnx-reference-legacy computes it wrongly"),
    (D, D, "exporter: onnx-reference-legacy drifts too on the same exported model, so the graph is wrong, not "
           "onnxruntime-legacy", "exporter: onnx-reference-legacy drifts too on the same exported model, so the graph "
                                 "is wrong, not onnxruntime-legacy"),
    (C, C, "", ""),
    (D, U, "", ""),  # the reference evaluator could not run it: no comparison to make
])
def test_the_drifting_side_is_named(ort: Verdict, ref: Verdict, ort_finding: str, ref_finding: str) -> None:
    eager, ort_cell, ref_cell = with_runtime_findings(_cells(ort, ref), PAIRS)
    assert (ort_cell.runtime_finding, ref_cell.runtime_finding) == (ort_finding, ref_finding)
    assert eager.runtime_finding == "" and ort_cell.verdict is ort and ref_cell.verdict is ref


def test_pairs_are_matched_per_config() -> None:
    cells = [CellResult(config_id="a", backend="onnxruntime-legacy", verdict=D),
             CellResult(config_id="b", backend="onnx-reference-legacy", verdict=C)]
    assert with_runtime_findings(cells, PAIRS) == tuple(cells)
