"""`harness merge`: combine JSON run reports from shards and from different environments.

Shards of one environment are unioned (a config x backend twice is an error); across
environments, each config x backend gets an agreement verdict from the outputs' sha256:
bitwise (every environment computed the same bytes), tolerance (they differ, but all pass
against the golden), or drift (some environment fails).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import EXIT_DRIFT, EXIT_OK, HarnessError
from harness.model.environment import Environment
from harness.model.environment import environment_label as label_of
from harness.reports.json_report import REPORT_SCHEMA
from harness.reports.text import counted, printable_lines, text_table
from harness.store.documents import read_json_document
from harness.verdicts import Agreement, Verdict

MERGED_SCHEMA = "harness.merged/1"


@dataclass(frozen=True, kw_only=True)
class MergedCell:
    environment: str
    config: str
    backend: str
    verdict: str
    failing: bool
    max_abs: float | str
    max_ulps: int
    outputs_sha256: str
    source: str
    document: dict[str, Any]  # the cell exactly as its report wrote it


@dataclass(frozen=True, kw_only=True)
class MatrixRow:
    config: str
    backend: str
    agreement: Agreement
    groups: tuple[tuple[str, ...], ...]  # environments that computed identical bytes
    cells: dict[str, MergedCell]


@dataclass(frozen=True, kw_only=True)
class MergedReport:
    environments: dict[str, dict[str, Any]]  # label -> environment fingerprint
    shards: dict[str, tuple[str, ...]]  # label -> shards seen ("" for a whole run)
    missing_shards: dict[str, tuple[str, ...]]
    cells: tuple[MergedCell, ...]
    matrix: tuple[MatrixRow, ...]
    sources: tuple[str, ...]

    @property
    def failures(self) -> tuple[MergedCell, ...]:
        return tuple(cell for cell in self.cells if cell.failing)

    @property
    def exit_code(self) -> int:
        return EXIT_DRIFT if self.failures or self.missing_shards else EXIT_OK


def environment_label(document: dict[str, Any]) -> str:
    """The report's own label, else one made from what most often changes bits."""
    if document.get("label"):
        return str(document["label"])
    return label_of(Environment.from_dict(document["environment"]))


def load_report(path: Path) -> dict[str, Any]:
    """A run report, checked as any file a pull request may carry: bounded, strict JSON, its schema."""
    document = read_json_document(path, what="harness.report/1 document", schema=REPORT_SCHEMA)
    if document["shard"]:
        index, count = (int(part) for part in document["shard"].split("/"))
        if not 1 <= index <= count:
            raise HarnessError(f"{path}: corrupt harness.report/1 document: field $.shard: {document['shard']!r} "
                               "is not K/N with 1 <= K <= N")
    return document


def merge_reports(paths: Sequence[Path]) -> MergedReport:
    """Union per environment, then the cross-environment matrix."""
    if not paths:
        raise HarnessError("merge needs at least one report")
    environments: dict[str, dict[str, Any]] = {}
    shards: dict[str, list[str]] = defaultdict(list)
    seen: dict[tuple[str, str, str], str] = {}
    cells: list[MergedCell] = []
    positions: dict[str, int] = {}
    for path in paths:
        document = load_report(path)
        for config, position in _suite_positions(document).items():
            positions[config] = min(position, positions.get(config, position))
        label = environment_label(document)
        environments.setdefault(label, document["environment"])
        shards[label].append(document["shard"])
        for cell in document["cells"]:
            key = (label, cell["config"], cell["backend"])
            if key in seen:
                raise HarnessError(f"{path}: {cell['config']} x {cell['backend']} in environment {label!r} "
                                   f"is already in {seen[key]}: overlapping shards or the same report twice")
            seen[key] = str(path)
            cells.append(_merged_cell(label, cell, str(path)))
    return MergedReport(
        environments=environments,
        shards={label: tuple(sorted(found)) for label, found in shards.items()},
        missing_shards=_missing_shards(shards),
        cells=tuple(cells),
        matrix=tuple(sorted(_matrix(cells, list(environments)), key=lambda row: positions.get(row.config, 0))),
        sources=tuple(str(path) for path in paths),
    )


def _suite_positions(document: dict[str, Any]) -> dict[str, int]:
    """Each config's place in the whole suite: shard K/N holds places K-1, K-1+N, ... (round-robin)."""
    if not document["shard"]:
        return {config: place for place, config in enumerate(document["configs"])}
    index, count = (int(part) for part in document["shard"].split("/"))
    return {config: place * count + index - 1 for place, config in enumerate(document["configs"])}


def _merged_cell(label: str, cell: dict[str, Any], source: str) -> MergedCell:
    return MergedCell(
        environment=label, config=cell["config"], backend=cell["backend"], verdict=cell["verdict"],
        failing=cell["failing"], max_abs=cell["max_abs"], max_ulps=cell["max_ulps"],
        outputs_sha256=cell["outputs_sha256"], source=source, document=cell,
    )


def _missing_shards(shards: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    missing = {}
    for label, found in shards.items():
        counts = {shard.split("/")[1] for shard in found if shard}
        if not counts or "" in found:
            continue
        total = int(max(counts, key=int))
        expected = {f"{index}/{total}" for index in range(1, total + 1)}
        if len(counts) > 1 or set(found) != expected:
            missing[label] = tuple(sorted(expected - set(found))) or ("mixed shard counts",)
    return missing


def _matrix(cells: list[MergedCell], labels: list[str]) -> tuple[MatrixRow, ...]:
    by_key: dict[tuple[str, str], dict[str, MergedCell]] = defaultdict(dict)
    for cell in cells:
        by_key[(cell.config, cell.backend)][cell.environment] = cell
    rows = []
    for (config, backend), per_environment in by_key.items():
        computed = {label: cell for label, cell in per_environment.items() if not Verdict(cell.verdict).not_computed}
        groups: dict[str, list[str]] = defaultdict(list)
        for label in labels:
            if label in computed:
                groups[computed[label].outputs_sha256].append(label)
        if any(cell.failing for cell in per_environment.values()):
            agreement = Agreement.DRIFT
        elif not computed:
            agreement = Agreement.NOT_RUN
        else:
            agreement = Agreement.BITWISE if len(groups) == 1 else Agreement.TOLERANCE
        rows.append(MatrixRow(config=config, backend=backend, agreement=agreement,
                              groups=tuple(tuple(group) for group in groups.values()), cells=per_environment))
    return tuple(rows)


def merged_document(report: MergedReport) -> dict[str, Any]:
    return {
        "schema": MERGED_SCHEMA,
        "exit_code": report.exit_code,
        "sources": list(report.sources),
        "environments": report.environments,
        "shards": {label: list(found) for label, found in report.shards.items()},
        "missing_shards": {label: list(found) for label, found in report.missing_shards.items()},
        "cells": [{**cell.document, "environment": cell.environment, "source": cell.source} for cell in report.cells],
        "matrix": [
            {"config": row.config, "backend": row.backend, "agreement": row.agreement.value,
             "groups": [list(group) for group in row.groups],
             "environments": {label: {"verdict": cell.verdict, "max_abs": cell.max_abs, "max_ulps": cell.max_ulps,
                                      "outputs_sha256": cell.outputs_sha256}
                              for label, cell in row.cells.items()}}
            for row in report.matrix
        ],
    }


def merge_lines(report: MergedReport) -> list[str]:
    """The terminal view: environments, shards, the agreement matrix, then failures; every line printable
    (labels, environments and ids come from the merged files)."""
    lines = [f"harness merge: {counted(len(report.sources), 'report')}, "
             f"{counted(len(report.environments), 'environment')}"]
    for label, environment in report.environments.items():
        shards = ", ".join(shard for shard in report.shards[label] if shard) or "whole suite"
        failing = sum(1 for cell in report.cells if cell.environment == label and cell.failing)
        cell_count = sum(1 for cell in report.cells if cell.environment == label)
        lines.append(f"  {label}: {cell_count} cells, {failing} failing; shards {shards}; "
                     f"{environment['cpu']} ({' '.join(environment['cpu_flags'])})")
    for label, missing in report.missing_shards.items():
        lines.append(f"  {label}: INCOMPLETE, missing shards {', '.join(missing)}")
    lines += ["", *_matrix_table(report)]
    differing = [row for row in report.matrix if row.agreement in (Agreement.TOLERANCE, Agreement.DRIFT)]
    if differing and len(report.environments) > 1:
        lines += ["", "Where environments differ:"]
        for row in differing:
            groups = " | ".join(" = ".join(group) for group in row.groups)
            worst = ", ".join(f"{label} {cell.verdict} {_number(cell.max_abs)}" for label, cell in row.cells.items())
            lines.append(f"  {row.config} x {row.backend}: {row.agreement.value}: bitwise groups [{groups}]; "
                         f"vs golden: {worst}")
    counts: dict[str, int] = defaultdict(int)
    for row in report.matrix:
        counts[row.agreement.value] += 1
    status = "FAILED" if report.exit_code else "OK"
    lines += ["", f"{status}: {len(report.matrix)} config x backend rows: "
                  + ", ".join(f"{count} {agreement}" for agreement, count in counts.items())
                  + f"; exit {report.exit_code}"]
    return printable_lines(lines)


def _number(value: float | str) -> str:
    return f"{value:.1e}" if isinstance(value, (int, float)) else str(value)


AGREEMENT_MARK = {Agreement.BITWISE: "=", Agreement.TOLERANCE: "~", Agreement.DRIFT: "DRIFT", Agreement.NOT_RUN: "-"}


NOT_RUN_MARKS = {Verdict.UNSUPPORTED.value: "unsupported", Verdict.SLOW.value: "slow",
                 Verdict.UNAVAILABLE.value: "unavailable"}
MATRIX_LEGEND = ("across environments: = bitwise everywhere, ~ differ but all within tolerance, DRIFT somewhere; "
                 "not run: unsupported, slow (left out; --all), unavailable (the backend cannot run there), "
                 "- mixed")


def agreement_mark(row: MatrixRow) -> str:
    """A matrix entry: the agreement, or for a row no environment computed, why (unsupported, slow, unavailable;
    "-" when the environments give different reasons)."""
    if row.agreement is not Agreement.NOT_RUN:
        return AGREEMENT_MARK[row.agreement]
    reasons = {NOT_RUN_MARKS.get(cell.verdict, "-") for cell in row.cells.values()}
    return reasons.pop() if len(reasons) == 1 else "-"


def _matrix_table(report: MergedReport) -> list[str]:
    backends = list(dict.fromkeys(row.backend for row in report.matrix))
    configs = list(dict.fromkeys(row.config for row in report.matrix))
    marks = {(row.config, row.backend): agreement_mark(row) for row in report.matrix}
    header = ["config", *backends]
    rows = [[config, *(marks.get((config, backend), "") for backend in backends)] for config in configs]
    return [MATRIX_LEGEND, *text_table(header, rows)]
