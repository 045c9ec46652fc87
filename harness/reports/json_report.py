"""The JSON report: the same content as the terminal report, as a versioned document.

Schema ``harness.report/1`` (documented in README.md, "JSON report"):
  schema, harness_version, suite, golden_dir, exit_code, wall_seconds,
  summary {cells, failing, by_verdict {verdict: count}},
  environment {packages, python, platform, machine, cpu, cpu_flags, cpu_count, torch_threads, cuda},
  environment_changes {config_id: [line]}, findings [{cause, verdicts [verdict], cells [[config, backend]]}],
  accept_command (re-records the failing configs' goldens; "" when nothing fails),
  backends [name], unavailable {name: reason}, configs [id],
  cells [{config, backend, verdict, failing, reason, reason_detail (the whole upstream error) | null,
          recorded_limitation {status, recorded, recorded_detail, observed, record_command} | null, cause,
          weights_changed [parameter] | null, oracle, golden_oracle,
          invariant_violations, argmax_changed, analysis [text], past {status, summary, max_ulps, max_abs},
          tolerance, max_abs, max_ulps, artifact {cause, summary, same_bytes, structure_diff [text], replay},
          artifact_source, prepare_seconds, run_seconds, notes [text], tensors [tensor], nondeterminism [tensor]}]
  tensor {name, status, expected_shape, actual_shape, expected_dtype, actual_dtype, max_abs, max_rel,
          max_ulps, mismatched, total, worst_index, worst_expected, worst_actual, diagnosis,
          statistics: null | {abs_error, rel_error, ulps: {mean, median, p90, p99, max},
                              histogram: [[label, count]], worst: [{index, expected, actual, abs_error, ulps}],
                              needed_atol, needed_rtol}}
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from harness import __version__
from harness.judging.compare import OracleDistance, TensorComparison
from harness.judging.results import CellResult, LimitationStatus, ProbeResult, RunReport
from harness.reports.findings import accept_command, findings
from harness.reports.probes import probe_documents
from harness.reports.text import finite, json_safe
from harness.reports.upstream_errors import rerecord_command
from harness.store.documents import first_schema_problem
from harness.verdicts import Verdict

SCHEMA = "harness.report/1"
REPORT_SCHEMA = ("harness.reports.schemas", "report.schema.json")


def report_document(report: RunReport) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "harness_version": __version__,
        "suite": report.suite,
        "golden_dir": report.golden_dir,
        "exit_code": report.exit_code,
        "wall_seconds": round(report.wall_seconds, 3),
        "label": report.label,
        "mode": "replay" if report.replay else "check" if report.live_reference else "run",
        "cache_dir": report.cache_dir,
        "shard": report.shard,
        "summary": {
            "cells": len(report.cells),
            "failing": len(report.failures),
            "by_verdict": {verdict.value: report.count(verdict) for verdict in Verdict},
        },
        "environment": report.environment.to_dict(),
        "environment_changes": {key: list(value) for key, value in report.environment_changes.items()},
        "backends": list(report.backends),
        "backend_settings": json_safe(report.backend_settings),
        "unavailable": dict(report.unavailable),
        "configs": list(report.config_ids),
        "stale": list(report.stale),
        "leftovers": list(report.leftovers),
        "warnings": list(report.warnings),
        "upstream_findings": upstream_findings(report),
        "findings": [{"cause": finding.cause, "verdicts": list(finding.verdicts),
                      "cells": [[cell.config_id, cell.backend] for cell in finding.cells]}
                     for finding in findings(report)],
        "accept_command": accept_command(report),
        "cells": [cell_document(cell, report) for cell in report.cells],
    }


def upstream_findings(report: RunReport) -> list[dict[str, Any]]:
    """Each distinct upstream warning once per backend, with the number of cells that raised it."""
    return [{"backend": backend, "note": note, "cells": count}
            for (backend, note), count in report.upstream_counts().items()]


def cell_document(cell: CellResult, report: RunReport | None = None) -> dict[str, Any]:
    """One cell; with its report, a recorded limitation that ran again carries the command that records it."""
    return {
        "config": cell.config_id,
        "backend": cell.backend,
        "verdict": cell.verdict.value,
        "failing": cell.verdict.failing,
        "reason": cell.reason,
        "reason_detail": cell.reason_detail or None,  # every line of the upstream error behind the reason
        "recorded_limitation": _limitation_document(cell, report),
        "cause": cell.cause.value if cell.cause else None,
        # null: the golden's weights; else the parameters that changed, passing or not ([]: none can be named)
        "weights_changed": list(cell.weights_changed.parameters) if cell.weights_changed else None,
        "oracle": _distance_document(cell.oracle),
        "invariant_violations": list(cell.invariant_violations),
        **({"relations": [outcome.to_dict() for outcome in cell.relations]} if cell.relations else {}),
        "argmax_changed": cell.argmax_changed,
        "analysis": list(cell.analysis),
        "past": json_safe(dataclasses.asdict(cell.past)) if cell.past else None,
        "artifact": _artifact_document(cell),
        "artifact_source": cell.artifact_source or None,
        "runtime_finding": cell.runtime_finding or None,
        **({"localisation": json_safe(cell.localisation.to_dict())} if cell.localisation else {}),
        "golden_oracle": _distance_document(cell.golden_oracle),
        "tolerance": dataclasses.asdict(cell.tolerance) if cell.tolerance else None,
        "max_abs": finite(cell.max_abs),
        "max_ulps": cell.max_ulps,
        "outputs_sha256": cell.outputs_sha256,
        "prepare_seconds": round(cell.prepare_seconds, 4),
        "run_seconds": round(cell.run_seconds, 6),
        # A passing cell's upstream warnings are counted once per report (upstream_findings); a failing
        # cell keeps its own, next to every other detail.
        "notes": list(cell.notes) if cell.verdict.failing else [],
        # A passing cell keeps one line of numbers per tensor; a failing one every statistic.
        "tensors": [tensor_document(tensor, full=cell.verdict.failing) for tensor in cell.tensors],
        "nondeterminism": [tensor_document(tensor) for tensor in cell.repeat],
    }


def tensor_document(tensor: TensorComparison, *, full: bool = True) -> dict[str, Any]:
    """A tensor's comparison; full=False leaves out its error statistics (null), for passing cells."""
    document: dict[str, Any] = json_safe(dataclasses.asdict(tensor))
    if not full:
        document["statistics"] = None
    document["status"] = tensor.status.value
    return document


def _limitation_document(cell: CellResult, report: RunReport | None) -> dict[str, Any] | None:
    limitation = cell.limitation
    if limitation is None:
        return None
    resolved = limitation.status is LimitationStatus.RESOLVED
    return {"status": limitation.status.value, "recorded": limitation.recorded,
            "recorded_detail": limitation.recorded_detail or None, "observed": limitation.observed or None,
            "record_command": rerecord_command(report, [cell.config_id]) if resolved and report is not None else None}


def _artifact_document(cell: CellResult) -> dict[str, Any] | None:
    check = cell.artifact_check
    if check is None:
        return None
    return {"cause": check.cause.value, "summary": check.summary, "same_bytes": check.same_bytes,
            "structure_diff": list(check.structure_diff),
            "replay": json_safe(dataclasses.asdict(check.replay)) if check.replay else None}


def _distance_document(distance: OracleDistance | None) -> dict[str, Any] | None:
    return None if distance is None else {"max_abs": finite(distance.max_abs), "max_ulps": distance.max_ulps,
                                          "reference": distance.reference}


def report_json(report: RunReport, probes: tuple[ProbeResult, ...] = ()) -> str:
    """The validated report document (plus probe results under "probes"), as strict JSON text."""
    document = report_document(report)
    if probes:
        document["probes"] = json_safe(probe_documents(probes))
    problems = schema_problems(document)
    if problems:  # the harness wrote something its own schema rejects: a bug, not a user error
        raise RuntimeError(f"report does not match {SCHEMA}: {problems[0]}")
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def schema_problems(document: Any) -> list[str]:
    """The first way the document breaks schema harness.report/1 (with its JSON path), or nothing."""
    problem = first_schema_problem(document, *REPORT_SCHEMA)
    return [problem] if problem else []
