"""The CPU portability report (`harness probe --isa`): value objects for what each fresh process computed under
one CPU-dispatch setting, and their terminal lines and `harness.isa/1` JSON document. Pure: no torch, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from harness.errors import EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_OK
from harness.reports.text import counted, json_safe, printable_lines
from harness.store.documents import first_schema_problem
from harness.verdicts import Verdict

SCHEMA = "harness.isa/1"
ISA_SCHEMA = ("harness.reports.schemas", "isa.schema.json")
BASELINE = "baseline (none set)"
Status = Literal["computed", "unsupported", "error"]


@dataclass(frozen=True, kw_only=True)
class IsaSetting:
    """One environment variable set to one value before torch is imported; skipped says why it was not run here."""

    variable: str  # "" for the baseline, which sets none
    value: str = ""
    skipped: str = ""

    @property
    def label(self) -> str:
        return f"{self.variable}={self.value}" if self.variable else BASELINE


@dataclass(frozen=True, kw_only=True)
class IsaOutcome:
    """One cell under one setting: its bits against the baseline process's, and its run verdict against the golden."""

    setting: IsaSetting
    capability: str  # the ATen dispatch level the process ran under (torch.backends.cpu.get_cpu_capability())
    status: Status
    detail: str = ""  # why it was not computed
    bitwise: bool | None = None  # same bits as the baseline; None where either side computed nothing
    max_ulps: int = 0
    max_abs: float = 0.0
    mismatched: int = 0
    total: int = 0
    verdict: Verdict | None = None  # as `harness run` judges it against the golden; None when not judged
    verdict_reason: str = ""
    golden_ulps: int | None = None  # the largest distance to the golden, in ulps
    # The seeded case itself moved: torch's initialisation kernels run under the setting too (the inputs are NumPy's).
    weights_differ: bool = False
    inputs_differ: bool = False

    @property
    def golden(self) -> str:
        """passes, fails, no golden, refused, not judged (unsupported, slow), or error (not computed)."""
        if self.status == "error":
            return "error"
        if self.verdict is Verdict.MISSING:
            return "no golden"
        if self.verdict is Verdict.CORRUPT:
            return "refused"
        if self.verdict is None or self.verdict in (Verdict.UNSUPPORTED, Verdict.SLOW, Verdict.UNAVAILABLE):
            return "not judged"
        return "fails" if self.verdict.failing else "passes"

    def movement(self) -> str:
        """How this outcome's bits relate to the baseline's, in a few words."""
        if self.status != "computed":
            return f"{self.status}: {self.detail}"
        if self.bitwise is None:
            return "not compared (the baseline computed nothing)"
        if self.bitwise:
            return "bitwise equal to the baseline"
        return (f"moves {ulps_text(self.max_ulps)} ({self.mismatched}/{self.total} values differ, "
                f"max |d| {self.max_abs:.1e}{self.seeded_text()})")

    def seeded_text(self) -> str:
        moved = [what for what, differ in (("weights", self.weights_differ), ("inputs", self.inputs_differ)) if differ]
        if not moved:
            return ""
        return f"; its seeded {' and '.join(moved)} differ from the baseline's: the initialisation moved too"


@dataclass(frozen=True, kw_only=True)
class IsaCell:
    """One config x backend: the baseline process's outcome and each run setting's."""

    config_id: str
    backend: str
    golden_capability: str  # the ATen level its golden was recorded under; "" without a readable golden
    baseline: IsaOutcome
    outcomes: tuple[IsaOutcome, ...]

    @property
    def name(self) -> str:
        return f"{self.config_id} x {self.backend}"

    @property
    def changed(self) -> tuple[IsaOutcome, ...]:
        return tuple(outcome for outcome in self.outcomes if outcome.bitwise is False)

    @property
    def computed(self) -> bool:
        return self.baseline.status == "computed" and all(o.status == "computed" for o in self.outcomes)

    @property
    def portable(self) -> bool:
        """Bitwise equal under every run setting."""
        return self.computed and not self.changed

    @property
    def max_ulps(self) -> int:
        return max((outcome.max_ulps for outcome in self.changed), default=0)

    @property
    def failing(self) -> tuple[IsaOutcome, ...]:
        """The outcomes that fail the golden or could not be computed (an error, not a known limitation)."""
        return tuple(outcome for outcome in (self.baseline, *self.outcomes) if outcome.golden in ("fails", "error"))


@dataclass(frozen=True, kw_only=True)
class IsaReport:
    """Every probed cell under every setting, with the machine facts the settings were chosen from."""

    machine: dict[str, str]  # cpu, native ATen capability, oneDNN and MKL versions
    settings: tuple[IsaSetting, ...]  # the baseline first, then every setting, skipped ones included
    cleared: tuple[str, ...]  # dispatch variables set in the caller's environment, cleared in every process
    cells: tuple[IsaCell, ...]

    @property
    def run_settings(self) -> tuple[IsaSetting, ...]:
        return tuple(setting for setting in self.settings if setting.variable and not setting.skipped)

    @property
    def exit_code(self) -> int:
        """2 when a golden was refused, 1 when a setting fails its golden (or cannot compute the cell), else 0."""
        outcomes = [outcome for cell in self.cells for outcome in (cell.baseline, *cell.outcomes)]
        if any(outcome.golden == "refused" for outcome in outcomes):
            return EXIT_BAD_INPUT
        return EXIT_DRIFT if any(cell.failing for cell in self.cells) else EXIT_OK


def isa_lines(report: IsaReport) -> list[str]:
    """The terminal report: machine and settings, one block per cell, the portability summary, the status."""
    machine = report.machine
    lines = [f"CPU dispatch probe: {counted(len(report.cells), 'cell')}, each computed in a fresh process per "
             f"setting and in a baseline process with no dispatch variable set",
             f"  this machine: {machine.get('cpu', '?')}; ATen capability {machine.get('cpu_capability', '?')}, "
             f"oneDNN {machine.get('onednn', '?')}, MKL {machine.get('mkl', '?')}",
             f"  settings run: {grouped(report.run_settings) or 'none'}"]
    lines += [f"  skipped: {setting.label} ({setting.skipped})" for setting in report.settings if setting.skipped]
    if report.cleared:
        lines.append(f"  cleared in every process (set in this environment): {', '.join(report.cleared)}")
    for cell in report.cells:
        lines += ["", *_cell_lines(cell)]
    lines += ["", *summary_lines(report)]
    return printable_lines(lines)


def _cell_lines(cell: IsaCell) -> list[str]:
    recorded = f"golden recorded under {cell.golden_capability}" if cell.golden_capability else "no golden"
    lines = [f"{cell.name}: {recorded}; {_baseline_text(cell.baseline)}"]
    shown = [o for o in cell.outcomes if o.bitwise is not True or o.golden not in ("passes", "no golden")]
    for outcome in shown:
        ran = f" (ATen ran {outcome.capability})" if outcome.capability != cell.baseline.capability else ""
        lines.append(f"  under {outcome.setting.label}{ran}: {outcome.movement()}{_golden_text(outcome)}")
    rest = [o.setting for o in cell.outcomes if o not in shown]
    if rest:
        lines.append(f"  bitwise under {'the other' if shown else 'all'} {len(rest)}: {grouped(rest)}")
    return lines


NAN_ULPS = 2**64 - 1  # judging.compare.ulp_distance's distance between a NaN and a number


def ulps_text(ulps: int) -> str:
    return "to NaN (or from it)" if ulps >= NAN_ULPS else counted(ulps, "ulp")


def grouped(settings: Iterable[IsaSetting]) -> str:
    """Settings by variable: 'ATEN_CPU_CAPABILITY=default|avx2; MKL_CBWR=AUTO'."""
    values: dict[str, list[str]] = {}
    for setting in settings:
        values.setdefault(setting.variable, []).append(setting.value)
    return "; ".join(f"{variable}={'|'.join(choices)}" for variable, choices in values.items())


def _baseline_text(baseline: IsaOutcome) -> str:
    where = f"the baseline here ({baseline.capability})"
    if baseline.status != "computed":
        return f"{where}: {baseline.status}: {baseline.detail}"
    if baseline.golden in ("passes", "fails"):
        return f"{where} {baseline.golden} it ({_verdict_text(baseline)})"
    return f"{where}: {baseline.golden}"


def _golden_text(outcome: IsaOutcome) -> str:
    if outcome.status != "computed":
        return ""
    if outcome.golden == "passes":
        return f" and still passes the golden ({_verdict_text(outcome)})"
    if outcome.golden == "fails":
        return f" and FAILS the golden ({_verdict_text(outcome)})"
    return f"; {outcome.golden}"


def _verdict_text(outcome: IsaOutcome) -> str:
    verdict = outcome.verdict.value if outcome.verdict else "?"
    distance = f", {ulps_text(outcome.golden_ulps)} from it" if outcome.golden_ulps else ""
    reason = f": {outcome.verdict_reason}" if outcome.verdict_reason and outcome.golden == "fails" else ""
    return f"{verdict}{distance}{reason}"


def summary_lines(report: IsaReport) -> list[str]:
    """Which cells are bitwise-portable across the run settings, which need a tolerance, and the status line."""
    count = counted(len(report.run_settings), "tested setting")
    portable = [cell.name for cell in report.cells if cell.portable]
    moved = [f"{cell.name} (up to {ulps_text(cell.max_ulps)}, under {grouped(o.setting for o in cell.changed)})"
             for cell in report.cells if cell.changed]
    broken = [cell.name for cell in report.cells if not cell.computed]
    lines = [f"Bitwise-portable across the {count}: {', '.join(portable) or 'none'}",
             f"Need a tolerance: {'; '.join(moved) or 'none'}"]
    reseeded = {o.setting.label: o.setting for cell in report.cells for o in cell.outcomes if o.weights_differ}
    if reseeded:
        lines.append(f"Seeded weights differ from the baseline's under {grouped(reseeded.values())}: torch's "
                     "initialisation kernels follow the setting too, so a golden recorded there holds other weights")
    if broken:
        lines.append(f"Not computed under every setting: {', '.join(broken)}")
    failing = [f"{cell.name} under {', '.join(o.setting.label for o in cell.failing)}"
               for cell in report.cells if cell.failing]
    refused = [cell.name for cell in report.cells if cell.baseline.golden == "refused"]
    if report.exit_code == EXIT_BAD_INPUT:
        lines.append(f"ERROR: golden refused for {', '.join(refused) or 'a cell'}; exit 2")
    elif failing:
        lines.append(f"FAILED: the golden fails for {'; '.join(failing)}; exit 1")
    else:
        judged = any(o.golden == "passes" for cell in report.cells for o in (cell.baseline, *cell.outcomes))
        lines.append("OK: every setting still passes the golden; exit 0" if judged else
                     "OK: no golden to judge against (record one to judge each setting); exit 0")
    return lines


def isa_document(report: IsaReport) -> dict[str, Any]:
    """The report as a `harness.isa/1` document (schema: harness/reports/schemas/isa.schema.json)."""
    document: dict[str, Any] = json_safe({
        "schema": SCHEMA,
        "exit_code": report.exit_code,
        "machine": dict(report.machine),
        "settings": [{"variable": s.variable, "value": s.value, "label": s.label, "skipped": s.skipped}
                     for s in report.settings],
        "cleared": list(report.cleared),
        "cells": [{"config": cell.config_id, "backend": cell.backend, "golden_capability": cell.golden_capability,
                   "portable": cell.portable, "max_ulps": cell.max_ulps, "baseline": _outcome_document(cell.baseline),
                   "outcomes": [_outcome_document(outcome) for outcome in cell.outcomes]}
                  for cell in report.cells],
        "summary": {"portable": [cell.name for cell in report.cells if cell.portable],
                    "need_tolerance": [cell.name for cell in report.cells if cell.changed],
                    "failing": [cell.name for cell in report.cells if cell.failing]},
    })
    return document


def _outcome_document(outcome: IsaOutcome) -> dict[str, Any]:
    return {"setting": outcome.setting.label, "variable": outcome.setting.variable, "value": outcome.setting.value,
            "capability": outcome.capability, "status": outcome.status, "detail": outcome.detail,
            "bitwise": outcome.bitwise, "max_ulps": outcome.max_ulps, "max_abs": outcome.max_abs,
            "mismatched": outcome.mismatched, "total": outcome.total, "golden": outcome.golden,
            "verdict": outcome.verdict.value if outcome.verdict else None, "verdict_reason": outcome.verdict_reason,
            "golden_ulps": outcome.golden_ulps, "weights_differ": outcome.weights_differ,
            "inputs_differ": outcome.inputs_differ}


def isa_json(report: IsaReport) -> str:
    """The validated `harness.isa/1` document as strict JSON text."""
    document = isa_document(report)
    problem = first_schema_problem(document, *ISA_SCHEMA)
    if problem:  # the harness wrote something its own schema rejects: a bug, not a user error
        raise RuntimeError(f"ISA report does not match {SCHEMA}: {problem}")
    return json.dumps(document, indent=2, allow_nan=False) + "\n"
