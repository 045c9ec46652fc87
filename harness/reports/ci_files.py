"""Report files for CI systems: JUnit XML and Markdown (GitHub step summaries), for runs and merges, and
GitHub Actions annotations. Text from files reaches them only through reports.text.printable."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

from harness.judging.results import RunReport
from harness.reports.findings import accept_command, findings
from harness.reports.merge import MatrixRow, MergedReport, agreement_mark
from harness.reports.terminal import cell_text, failure_lines, summary_line, weights_warnings
from harness.reports.text import counted, printable
from harness.verdicts import Agreement, Verdict

SKIPPED = (Verdict.UNSUPPORTED, Verdict.SLOW, Verdict.UNAVAILABLE)


def junit_xml(report: RunReport) -> bytes:
    """One <testcase> per config x backend: failures with the report's details, skips with reasons."""
    suite = ElementTree.Element("testsuite", {
        "name": "harness", "tests": str(len(report.cells)),
        "failures": str(sum(1 for c in report.cells if c.verdict.failing and c.verdict is not Verdict.ERROR)),
        "errors": str(report.count(Verdict.ERROR)),
        "skipped": str(sum(1 for c in report.cells if c.verdict in SKIPPED)),
        "time": f"{report.wall_seconds:.3f}",
    })
    for cell in report.cells:
        case = ElementTree.SubElement(suite, "testcase", {
            "classname": f"harness.{printable(cell.config_id)}", "name": printable(cell.backend),
            "time": f"{cell.prepare_seconds + cell.run_seconds:.4f}",
        })
        if cell.verdict.failing:
            tag = "error" if cell.verdict is Verdict.ERROR else "failure"
            element = ElementTree.SubElement(case, tag, {"message": f"{cell.verdict.value}: {cell_text(cell)}",
                                                         "type": cell.verdict.value})
            element.text = "\n".join(failure_lines(cell))
        elif cell.verdict in SKIPPED:
            ElementTree.SubElement(case, "skipped", {"message": printable(f"{cell.verdict.value}: {cell.reason}")})
    suites = ElementTree.Element("testsuites")
    suites.append(suite)
    return bytes(ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True))


def run_markdown(report: RunReport) -> str:
    lines = [f"## harness: {summary_line(report)}", ""]
    if report.label or report.shard:
        lines += [f"Environment {_code(report.label or '-')}, shard {_code(report.shard or 'all')}", ""]
    lines += [f"| config | {' | '.join(map(_cell, report.backends))} |", f"|---|{'---|' * len(report.backends)}"]
    by_key = {(cell.config_id, cell.backend): cell for cell in report.cells}
    for config_id in report.config_ids:
        entries = [_bold_if_failing(by_key[(config_id, b)].verdict, cell_text(by_key[(config_id, b)]))
                   if (config_id, b) in by_key else "" for b in report.backends]
        lines.append(f"| {_code(config_id)} | {' | '.join(entries)} |")
    found = findings(report)
    if found:
        lines += ["", "### Failures, one finding per cause", ""]
        for number, finding in enumerate(found, 1):
            representative = finding.representative
            lines += [f"{number}. {_cell(finding.heading())}", "",
                      *_fenced(failure_lines(representative, report.environment_changes.get(
                          representative.config_id, ()))), ""]
    missing = [cell for cell in report.failures if cell.verdict is Verdict.MISSING]
    if missing:
        lines += ["", "### Missing goldens", "", *_fenced([line for cell in missing for line in failure_lines(cell)])]
    accept = accept_command(report)
    if accept:
        lines += ["", "### Accept these results", "", "Re-record the failing configs' goldens:", "",
                  *_fenced([printable(accept)])]
    warnings = [printable(line) for line in weights_warnings(report) if line]  # passing cells whose weights changed
    if warnings:
        lines += ["", "### Weights changed", "", *_fenced(warnings)]
    return "\n".join(lines) + "\n"


def merge_markdown(report: MergedReport) -> str:
    status = "FAILED" if report.exit_code else "OK"
    lines = [f"## harness merge: {status}: {counted(len(report.sources), 'report')}, "
             f"{counted(len(report.environments), 'environment')}",
             "", "| environment | cells | failing | shards |", "|---|---|---|---|"]
    for label in report.environments:
        cells = [cell for cell in report.cells if cell.environment == label]
        shards = ", ".join(s for s in report.shards[label] if s) or "whole suite"
        lines.append(f"| {_code(label)} | {len(cells)} | {sum(c.failing for c in cells)} | {_cell(shards)} |")
    backends = list(dict.fromkeys(row.backend for row in report.matrix))
    marks = {(row.config, row.backend): row for row in report.matrix}
    lines += ["", "Agreement across environments: **=** bitwise, **~** within tolerance, **DRIFT**; "
                  "not run: unsupported, slow, unavailable, **-** mixed",
              "", f"| config | {' | '.join(map(_cell, backends))} |", f"|---|{'---|' * len(backends)}"]
    for config in dict.fromkeys(row.config for row in report.matrix):
        entries = []
        for backend in backends:
            row = marks.get((config, backend))
            entries.append("" if row is None else _agreement_text(row))
        lines.append(f"| {_code(config)} | {' | '.join(entries)} |")
    return "\n".join(lines) + "\n"


def _agreement_text(row: MatrixRow) -> str:
    if row.agreement is Agreement.TOLERANCE:
        return "~ (" + _cell(" / ".join("+".join(group) for group in row.groups)) + ")"
    mark = agreement_mark(row)
    return f"**{mark}**" if row.agreement is Agreement.DRIFT else mark


def _bold_if_failing(verdict: Verdict, text: str) -> str:
    return f"**{text}**" if verdict.failing else text


def _cell(text: str) -> str:
    """Text for a Markdown table cell: printable, and no `|` that would end the cell."""
    return printable(text).replace("|", "\\|")


def _code(text: str) -> str:
    """An inline code span in a table cell; a backtick inside would end the span, so it becomes a quote."""
    inside = _cell(text).replace("`", "'")
    return f"`{inside}`"


def _fenced(lines: list[str]) -> list[str]:
    """A fenced code block no line of the text can close: the fence is longer than any run of backticks in it."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *lines, fence]


def github_annotations(report: RunReport) -> list[str]:
    """One GitHub Actions `::error` workflow command per failing cell (printed when the run is a GitHub Actions
    step). Title and message are printable text, then escaped as the runner unescapes them (data: `%`, CR, LF;
    properties also `:` and `,`), so nothing in them can end the command early or start another."""
    commands = []
    for cell in report.failures:
        title = printable(f"harness: {cell.config_id} x {cell.backend}: {cell.verdict.value}")
        message = "\n".join(failure_lines(cell))  # printable lines: the line feeds between them are ours
        commands.append(f"::error title={_property(title)}::{_data(message)}")
    return commands


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
