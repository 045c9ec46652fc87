"""Two runtimes on one exported model: ONNX Runtime and the ONNX reference evaluator run the very same
export, so when one drifts from the golden and the other does not, the runtime is to blame; when both
drift, the graph the exporter wrote is. Pure: cells in, cells out."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from harness.judging.results import CellResult
from harness.verdicts import Verdict

JUDGED = (Verdict.IDENTICAL, Verdict.CLOSE, Verdict.DRIFT)


def with_runtime_findings(cells: Sequence[CellResult], pairs: Sequence[tuple[str, str]]) -> tuple[CellResult, ...]:
    """For each (ONNX Runtime backend, reference backend) pair on one config where exactly one drifts, or
    both do, the drifting cells get a `runtime_finding` naming the runtime or the exporter."""
    by_key = {(cell.config_id, cell.backend): cell for cell in cells}
    findings: dict[tuple[str, str], str] = {}
    for runtime, reference in pairs:
        for config_id in dict.fromkeys(cell.config_id for cell in cells):
            ort, ref = by_key.get((config_id, runtime)), by_key.get((config_id, reference))
            if ort is None or ref is None or ort.verdict not in JUDGED or ref.verdict not in JUDGED:
                continue
            ort_drifts, ref_drifts = ort.verdict is Verdict.DRIFT, ref.verdict is Verdict.DRIFT
            if ort_drifts and ref_drifts:
                line = (f"exporter: {reference} drifts too on the same exported model, so the graph is wrong, "
                        f"not {runtime}")
                findings[(config_id, runtime)] = findings[(config_id, reference)] = line
            elif ort_drifts:
                findings[(config_id, runtime)] = (f"runtime: {reference} computes the same exported model within "
                                                  f"tolerance, so {runtime} computes it wrongly")
            elif ref_drifts:
                findings[(config_id, reference)] = (f"runtime: {runtime} computes the same exported model within "
                                                    f"tolerance, so {reference} computes it wrongly")
    return tuple(dataclasses.replace(cell, runtime_finding=findings[(cell.config_id, cell.backend)])
                 if (cell.config_id, cell.backend) in findings else cell for cell in cells)
