"""The short view of a run that fits a screen: one line per backend, unsupported cells grouped by reason, slow
cells in one line, and the config x backend table folded to the terminal's width (rich) when asked for."""

from __future__ import annotations

import io
from collections import defaultdict

from harness.judging.results import CellResult, RunReport
from harness.reports.cell_details import cell_text, ulps_text
from harness.reports.text import counted, text_table
from harness.reports.upstream_errors import detail_lines
from harness.verdicts import NO_AUTOGRAD, Verdict

DEFAULT_WIDTH = 120
_OBSERVED = " (observed: "  # a known limitation's reason, then what this run saw: the part before it groups


def backend_summary_lines(report: RunReport, width: int | None = None) -> list[str]:
    """One line per backend: how many cells were identical, close, unsupported, slow and failing, and the worst
    distance to the golden (or the reference) with the config where it was found (a line wider than `width` is
    cut, its end marked: --table and the reports have the whole)."""
    header = ["backend", "identical", "close", "unsupported", "slow", "failing", "worst distance"]
    rows = []
    for backend in report.backends:
        cells = [cell for cell in report.cells if cell.backend == backend]
        if backend in report.unavailable:
            rows.append([backend, "", "", "", "", "", f"unavailable: {report.unavailable[backend]}"])
            continue
        count = {verdict: sum(1 for cell in cells if cell.verdict is verdict) for verdict in Verdict}
        failing = sum(1 for cell in cells if cell.verdict.failing)
        rows.append([backend, str(count[Verdict.IDENTICAL]), str(count[Verdict.CLOSE]),
                     str(count[Verdict.UNSUPPORTED]), str(count[Verdict.SLOW]), str(failing), _worst(cells)])
    lines = text_table(header, rows)
    return [line if width is None or len(line) <= width else line[:width - 3] + "..." for line in lines]


def _worst(cells: list[CellResult]) -> str:
    compared = [cell for cell in cells if cell.verdict in (Verdict.CLOSE, Verdict.DRIFT)]
    if not compared:
        return "bitwise" if any(cell.verdict is Verdict.IDENTICAL for cell in cells) else "-"
    worst = max(compared, key=lambda cell: cell.max_abs)
    return f"{worst.max_abs:.1e} ({ulps_text(worst.max_ulps)} ulps) at {worst.config_id}"


def unsupported_reason(cell: CellResult) -> str:
    """What groups an unsupported cell with others: its known limitation without what this run observed, or a
    forward-only backend's lack of autograd; a user's model's recorded limitation stays whole."""
    if NO_AUTOGRAD in cell.reason:
        return f"{NO_AUTOGRAD}: forward pass only (gradient and training configs)"
    return cell.reason.split(_OBSERVED, 1)[0]


def unsupported_group_lines(report: RunReport, *, width: int = DEFAULT_WIDTH) -> list[str]:
    """Unsupported cells, one line per reason with its count and backends, each line cut to the width."""
    groups: dict[str, list[CellResult]] = defaultdict(list)
    for cell in report.cells:
        if cell.verdict is Verdict.UNSUPPORTED:
            groups[unsupported_reason(cell)].append(cell)
    if not groups:
        return []
    total = sum(len(cells) for cells in groups.values())
    lines = ["", f"Unsupported ({counted(total, 'cell')}, {counted(len(groups), 'reason')}; known or recorded "
                 "limitations, tried and confirmed; -v lists every cell):"]
    for reason, cells in groups.items():
        backends = ", ".join(dict.fromkeys(cell.backend for cell in cells))
        lines.append(shortened(f"  {len(cells):>3} {backends}: {reason}", width))
        if cells[0].limitation:  # a user's model's: where in the user's code, not a built-in limitation's known text
            lines += detail_lines(cells[0], verbose=False, indent="        ")
    return lines


def slow_line(report: RunReport) -> list[str]:
    """The cells left out as slow, counted per backend, in one line."""
    by_backend: dict[str, int] = defaultdict(int)
    for cell in report.cells:
        if cell.verdict is Verdict.SLOW:
            by_backend[cell.backend] += 1
    if not by_backend:
        return []
    each = ", ".join(f"{backend} {count}" for backend, count in by_backend.items())
    return [f"Left out as slow: {counted(sum(by_backend.values()), 'cell')} ({each}); --all runs them"]


def folded_table(report: RunReport, *, width: int = DEFAULT_WIDTH) -> list[str]:
    """The config x backend table as plain text no wider than `width`: aligned columns when they fit, else rich
    folds each column's text (no colour, no box characters: it reads the same in a CI log)."""
    by_key = {(cell.config_id, cell.backend): cell for cell in report.cells}
    rows = [[config_id, *(cell_text(by_key[(config_id, backend)]) if (config_id, backend) in by_key else "-"
                          for backend in report.backends)] for config_id in report.config_ids]
    header = ["config", *report.backends]
    plain = text_table(header, rows)
    if max(map(len, plain)) <= width:
        return plain
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, safe_box=True)
    for name in header:
        table.add_column(Text(name), overflow="fold")
    for row in rows:
        table.add_row(*map(Text, row))  # Text: a config id's "[" is never read as rich markup
    buffer = io.StringIO()
    Console(file=buffer, width=width, no_color=True, color_system=None, force_terminal=False,
            emoji=False, highlight=False, markup=False).print(table)
    return [line.rstrip() for line in buffer.getvalue().splitlines()]


def shortened(text: str, limit: int) -> str:
    """The text cut to `limit` characters, ending in "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
