"""Upstream errors in the reports: the lines that explain one (without -v), the whole of it (with -v), and the
recorded limitations of users' models that a run found running again.

A cell's `reason` is the error's first line; its `reason_detail` is the whole error, one printable line per line.
TorchScript's first line rarely says where: the source line and the `<--- HERE` marker under it do.
"""

from __future__ import annotations

import re

from harness.judging.limitations import RECORDED_HEADING
from harness.judging.results import CellResult, LimitationStatus, RunReport
from harness.reports.text import counted

MARKER = "<--- HERE"  # TorchScript points at the offending expression with it, under the source line
EXPLAINING_LINES = 8  # at most this many lines explain an error without -v
_SOURCE = re.compile(r'^\s*File "[^"]*", line \d+')  # where (TorchScript, and Python tracebacks in messages)
_CALLED_FROM = "is being compiled since it was called from"  # TorchScript's chain from forward to the culprit


def explaining_lines(detail: str) -> list[str]:
    """The lines after the first that say where the error is: each `File "...", line N`, each line TorchScript
    marks with `<--- HERE` and the marker itself, its "called from" chain, and where a changed failure's recorded
    error starts; at most EXPLAINING_LINES, their common indentation removed."""
    lines = detail.split("\n")[1:]
    picked: set[int] = set()
    for index, line in enumerate(lines):
        if MARKER in line:
            picked.update({index - 1, index} if index else {index})
        elif _SOURCE.match(line) or _CALLED_FROM in line or line == RECORDED_HEADING:
            picked.add(index)
    chosen = [lines[index] for index in sorted(picked)][:EXPLAINING_LINES]
    margin = min((len(line) - len(line.lstrip(" ")) for line in chosen if line.strip()), default=0)
    return [line[margin:] for line in chosen]  # the marker stays under the expression it points at


def detail_lines(cell: CellResult, *, verbose: bool, indent: str = "      ") -> list[str]:
    """Under a cell's reason: with -v, every line of the upstream error; without, the lines that explain it and
    how many more -v shows. Nothing when the cell has no upstream error or its reason says all of it."""
    lines = cell.reason_detail.split("\n") if cell.reason_detail else []
    if len(lines) < 2:
        return []
    if verbose:
        return [f"{indent}whole upstream error:", *(f"{indent}  {line}" for line in lines)]
    shown = explaining_lines(cell.reason_detail)
    hidden = len(lines) - 1 - len(shown)
    more = f"{indent}({counted(hidden, 'more line')} with -v, or in the JSON report's reason_detail)"
    return [*(f"{indent}{line}" for line in shown), *([more] if hidden else [])]


def rerecord_command(report: RunReport, config_ids: list[str]) -> str:
    """The command that records these configs' goldens again, with the run's own suite and golden directory."""
    record = report.hints.get("record", "harness record")
    return f"{record} " + " ".join(f"--config {config_id}" for config_id in config_ids) + " --force"


def resolved_limitation_lines(report: RunReport) -> list[str]:
    """Backends the goldens recorded as unable to take a user's model that ran in this run (judged against the
    golden like any cell), and the command that records them again so that the goldens hold their fingerprints."""
    resolved = [cell for cell in report.cells
                if cell.limitation is not None and cell.limitation.status is LimitationStatus.RESOLVED]
    if not resolved:
        return []
    lines = ["", f"Recorded as unsupported for their model, running now ({counted(len(resolved), 'cell')}; judged "
                 "against the golden; record them again to keep their fingerprints):"]
    for cell in resolved:
        assert cell.limitation is not None
        lines.append(f"  {cell.config_id} x {cell.backend}: now {cell.verdict.value}; "
                     f"recorded: {cell.limitation.recorded}")
    config_ids = list(dict.fromkeys(cell.config_id for cell in resolved))
    return [*lines, f"  record them: {rerecord_command(report, config_ids)}"]
