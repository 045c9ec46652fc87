"""Failures grouped by their attributed cause, and the command that accepts them.

One cause is one finding: the cells whose weights changed the same way, whose inputs changed, whose
environment changed the same way, whose backend's runtime moved, or whose exporter changed with the same
structure diff form one finding that lists them. Every other failure is a finding of its own, except that
cells failing with the same error on one backend are one. The terminal, Markdown and HTML views share
this grouping, and every view of a failure ends with `accept_command`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from harness.judging.results import CellResult, RunReport, WeightsChange
from harness.reports.text import counted
from harness.verdicts import ArtifactCause, Cause, Verdict

NAMED_PARAMETERS = 3  # a changed-weights line names this many parameters, then "and N more"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """Failing cells that share one attributed cause; the first is the representative whose details are shown."""

    cause: str
    cells: tuple[CellResult, ...]

    @property
    def representative(self) -> CellResult:
        return self.cells[0]

    @property
    def verdicts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(cell.verdict.value for cell in self.cells))

    def cell_list(self, *, full: bool = True) -> str:
        """The cells, one group per config: `cfg (eager, onnxruntime-legacy); cfg2 (eager)`. Not full: the first
        SHOWN_CONFIGS configs, their backends counted beyond SHOWN_BACKENDS, then how many more."""
        by_config: dict[str, list[str]] = defaultdict(list)
        for cell in self.cells:
            by_config[cell.config_id].append(cell.backend)
        groups = list(by_config.items())
        if full:
            return "; ".join(f"{config_id} ({', '.join(backends)})" for config_id, backends in groups)
        shown = [f"{config_id} ({_backends_text(backends)})" for config_id, backends in groups[:SHOWN_CONFIGS]]
        more = len(groups) - SHOWN_CONFIGS
        return "; ".join(shown) + (f"; and {counted(more, 'more config')} (-v lists them)" if more > 0 else "")

    def heading(self, *, full: bool = True) -> str:
        return (f"{self.cause}: {counted(len(self.cells), 'cell')} "
                f"({', '.join(self.verdicts)}): {self.cell_list(full=full)}")


def _backends_text(backends: list[str]) -> str:
    return ", ".join(backends) if len(backends) <= SHOWN_BACKENDS else counted(len(backends), "backend")


SHOWN_CONFIGS = 3  # a terminal heading names this many configs (the Markdown, HTML and -v name them all)
SHOWN_BACKENDS = 3


def changed_parameters_text(change: WeightsChange) -> str:
    """Which parameters changed: the first few by name, then how many more; or why none can be named."""
    if not change.named:
        return "the golden predates per-parameter sha256 (harness.golden/3), so no parameter can be named"
    if not change.parameters:
        return "no parameter's sha256 differs from the golden's: their order changed"
    more = len(change.parameters) - NAMED_PARAMETERS
    return ", ".join(change.parameters[:NAMED_PARAMETERS]) + (f" and {more} more" if more > 0 else "")


def cause_of(cell: CellResult, environment_changes: tuple[str, ...] = ()) -> str:
    """The attributed cause that groups this failing cell with others, or "" when it is a finding of its own."""
    if cell.verdict is Verdict.CORRUPT:
        return f"golden of {cell.config_id} refused (corrupt)"
    if cell.cause is Cause.WEIGHTS and cell.weights_changed is not None:
        return f"weights changed since the golden ({changed_parameters_text(cell.weights_changed)})"
    if cell.cause is Cause.INPUTS:
        return "inputs changed since the golden"
    check = cell.artifact_check
    if check is not None and check.cause is ArtifactCause.RUNTIME:
        return f"{cell.backend}'s runtime moved (its stored artifact computes otherwise today)"
    if check is not None and check.cause in (ArtifactCause.EXPORTER, ArtifactCause.BOTH):
        diff = f": {'; '.join(check.structure_diff)}" if check.structure_diff else ""
        return f"{cell.backend}: {check.cause.value}{diff}"
    if environment_changes and cell.verdict in (Verdict.DRIFT, Verdict.SHAPE):
        return f"environment changed since the golden: {'; '.join(environment_changes)}"
    if cell.verdict is Verdict.ERROR and cell.reason:
        return f"{cell.backend}: {cell.reason}"
    if cell.cause is Cause.COMPUTE and cell.verdict in (Verdict.DRIFT, Verdict.SHAPE):
        # Same inputs and weights, other numbers: every backend of the config that says so tells one story (the
        # golden's tensors moved, or a kernel they share did).
        return f"{cell.config_id} computes otherwise than its golden, with the golden's inputs and weights"
    return ""


def findings(report: RunReport) -> list[Finding]:
    """The failing cells (MISSING aside: those say "record" in their own section) grouped by cause, in first-seen
    order; a cell with no shared cause is a finding of its own."""
    groups: dict[str, list[CellResult]] = {}
    for cell in report.failures:
        if cell.verdict is Verdict.MISSING:
            continue
        cause = cause_of(cell, report.environment_changes.get(cell.config_id, ()))
        groups.setdefault(cause or f"{cell.config_id} x {cell.backend}: {cell.verdict.value}", []).append(cell)
    return [Finding(cause=cause, cells=tuple(cells)) for cause, cells in groups.items()]


def failing_configs(report: RunReport) -> tuple[str, ...]:
    """Every config with a failing cell, in suite order."""
    failing = {cell.config_id for cell in report.failures}
    return tuple(config_id for config_id in report.config_ids if config_id in failing)


def accept_command(report: RunReport) -> str:
    """The command that accepts this run's results: re-record exactly the failing configs' goldens with the
    user's --suite and --golden-dir; "" when nothing fails, or when the run had no goldens (`harness check`)."""
    configs = failing_configs(report)
    if not configs or report.live_reference:
        return ""
    record = report.hints.get("record", "harness record")
    return f"{record} --force " + " ".join(f"--config {config_id}" for config_id in configs)

