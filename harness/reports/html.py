"""A self-contained HTML report (one file, no network): a config x backend heatmap coloured by
verdict and error in ulps; each failing cell opens its details, with an |error| histogram."""

from __future__ import annotations

import math
import re
from html import escape
from typing import Any

from harness.judging.results import CellResult, RunReport
from harness.reports.findings import Finding, accept_command, findings
from harness.reports.localisation import heat_map_html
from harness.reports.merge import MergedReport
from harness.reports.terminal import cell_text, failure_lines, summary_line
from harness.reports.text import counted, printable
from harness.verdicts import Agreement, Verdict

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
table.heat{border-collapse:collapse} table.heat th,table.heat td{border:1px solid #fff;padding:3px 8px;
 font-size:12px;white-space:nowrap} table.heat th{background:#eee;position:sticky;top:0}
td.cell a{color:inherit;text-decoration:underline;cursor:pointer}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;font-size:12px}
details{margin:8px 0;border:1px solid #ccc;border-radius:4px;padding:6px 10px}
summary{cursor:pointer;font-weight:600} pre{font-size:12px;overflow-x:auto;background:#f7f7f7;padding:8px}
"""
SCRIPT = """
function openCell(id){var d=document.getElementById(id);if(d){d.open=true;d.scrollIntoView();}return false;}
"""
FIXED_COLOURS = {
    Verdict.IDENTICAL: "#1a9850", Verdict.DRIFT: "#d73027", Verdict.SHAPE: "#7b3294",
    Verdict.INVARIANT: "#c51b7d", Verdict.NONDETERMINISTIC: "#f46d43", Verdict.ERROR: "#67001f",
    Verdict.MISSING: "#fdae61", Verdict.CORRUPT: "#8c510a",
    Verdict.UNSUPPORTED: "#bdbdbd", Verdict.SLOW: "#e0e0e0", Verdict.UNAVAILABLE: "#f0f0f0",
}
AGREEMENT_COLOURS = {Agreement.BITWISE: "#1a9850", Agreement.TOLERANCE: "#a6d96a", Agreement.DRIFT: "#d73027",
                     Agreement.NOT_RUN: "#e0e0e0"}


def _text(value: Any) -> str:
    """Text for HTML (an element or an attribute): printable first (reports.text), then markup escaped."""
    return escape(printable(value))


def _anchor(config_id: str, backend: str) -> str:
    """An element id made of safe characters only: it stands in an attribute and in a script's string."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"cell-{config_id}-{backend}")


def colour(cell: CellResult) -> str:
    """Green for bitwise; for close, from light green to yellow as log10(ulps) grows; fixed otherwise."""
    if cell.verdict is not Verdict.CLOSE:
        return FIXED_COLOURS[cell.verdict]
    shade = min(1.0, math.log10(max(cell.max_ulps, 1)) / 6)  # 1 ulp .. 1e6 ulps
    green, yellow = (166, 217, 106), (254, 224, 139)
    red, grn, blue = (round(a + (b - a) * shade) for a, b in zip(green, yellow, strict=True))
    return f"#{red:02x}{grn:02x}{blue:02x}"


def run_html(report: RunReport) -> str:
    by_key = {(cell.config_id, cell.backend): cell for cell in report.cells}
    header = "".join(f"<th>{_text(backend)}</th>" for backend in report.backends)
    rows = []
    for config_id in report.config_ids:
        entries = "".join(_heat_cell(by_key.get((config_id, backend)), _anchor(config_id, backend))
                          for backend in report.backends)
        rows.append(f"<tr><th>{_text(config_id)}</th>{entries}</tr>")
    details = "".join(_finding(number, finding) for number, finding in enumerate(findings(report), 1))
    details += "".join(_details(cell, _anchor(cell.config_id, cell.backend)) for cell in report.failures
                       if cell.verdict is Verdict.MISSING)
    accept = accept_command(report)
    details += f"<p>Accept these results: <code>{_text(accept)}</code></p>" if accept else ""
    legend = "".join(f'<span style="background:{c};color:{_text_colour(v)}">{_text(v.value)}</span>'
                     for v, c in FIXED_COLOURS.items())
    close = ('<span style="background:#a6d96a">close, 1 ulp</span>'
             '<span style="background:#fee08b">close, 1e6 ulps</span>')
    body = (f"<h1>harness report</h1><p>{_text(summary_line(report))}</p>"
            f"<p>suite {_text(report.suite)}; golden {_text(report.golden_dir)}; label {_text(report.label or '-')}"
            f"; shard {_text(report.shard or 'all')}; torch {_text(report.environment.packages.get('torch', '?'))}"
            f", onnxruntime {_text(report.environment.packages.get('onnxruntime', '?'))}</p>"
            f'<p class="legend">{legend}{close}</p>'
            f'<table class="heat"><tr><th>config</th>{header}</tr>{"".join(rows)}</table>'
            f"<h2>Failures ({len(report.failures)})</h2>{details or '<p>none</p>'}")
    return _page("harness report", body)


def merge_html(report: MergedReport) -> str:
    backends = list(dict.fromkeys(row.backend for row in report.matrix))
    by_key = {(row.config, row.backend): row for row in report.matrix}
    rows = []
    for config in dict.fromkeys(row.config for row in report.matrix):
        entries = []
        for backend in backends:
            row = by_key.get((config, backend))
            if row is None:
                entries.append("<td></td>")
                continue
            title = "; ".join(f"{label}: {cell.verdict} {cell.max_abs} ({cell.outputs_sha256[:12]})"
                              for label, cell in row.cells.items())
            groups = " / ".join("+".join(group) for group in row.groups)
            text = f"{row.agreement.value} ({groups})" if row.agreement is Agreement.TOLERANCE else row.agreement.value
            entries.append(f'<td style="background:{AGREEMENT_COLOURS[row.agreement]}" title="{_text(title)}">'
                           f"{_text(text)}</td>")
        rows.append(f"<tr><th>{_text(config)}</th>{''.join(entries)}</tr>")
    environments = "".join(f"<li><b>{_text(label)}</b>: {_text(env['cpu'])}; "
                           f"torch threads {_text(env['torch_threads'])}; "
                           f"{_text(', '.join(f'{k} {v}' for k, v in env['packages'].items()))}</li>"
                           for label, env in report.environments.items())
    header = "".join(f"<th>{_text(backend)}</th>" for backend in backends)
    body = (f"<h1>harness merge: {counted(len(report.sources), 'report')}, "
            f"{counted(len(report.environments), 'environment')}</h1>"
            f"<ul>{environments}</ul>"
            "<p>Agreement across environments: bitwise (same output bytes everywhere), tolerance (different bytes, "
            "all within tolerance of the golden), drift (some environment fails). Hover a cell for each "
            "environment's verdict.</p>"
            f'<table class="heat"><tr><th>config</th>{header}</tr>{"".join(rows)}</table>')
    return _page("harness merge", body)


def _heat_cell(cell: CellResult | None, anchor: str) -> str:
    if cell is None:
        return "<td></td>"
    text = _text(cell_text(cell))
    title = _text(cell.reason or (cell.past.summary if cell.past else ""))
    if cell.verdict.failing:
        text = f'<a href="#{anchor}" onclick="return openCell(\'{anchor}\')">{text}</a>'
    style = f"background:{colour(cell)};color:{_text_colour(cell.verdict)}"
    return f'<td class="cell" style="{style}" title="{title}">{text}</td>'


def _text_colour(verdict: Verdict) -> str:
    dark = (Verdict.IDENTICAL, Verdict.DRIFT, Verdict.SHAPE, Verdict.ERROR, Verdict.INVARIANT, Verdict.NONDETERMINISTIC,
            Verdict.CORRUPT)
    return "#fff" if verdict in dark else "#222"


def _finding(number: int, finding: Finding) -> str:
    """One cause: its heading, then every cell's details (the representative's first)."""
    cells = "".join(_details(cell, _anchor(cell.config_id, cell.backend)) for cell in finding.cells)
    return f"<h3>[{number}] {_text(finding.heading())}</h3>{cells}"


def _details(cell: CellResult, anchor: str) -> str:
    histograms = "".join(_histogram_svg(tensor.name, tensor.statistics.histogram)
                         for tensor in cell.tensors if tensor.statistics and not tensor.passed)
    return (f'<details id="{anchor}"><summary>{_text(cell.config_id)} x {_text(cell.backend)}: '
            f"{_text(cell.verdict.value)}</summary>{histograms}{heat_map_html(cell.localisation)}"
            f"<pre>{escape(chr(10).join(failure_lines(cell)))}</pre></details>")  # lines already printable


def _histogram_svg(name: str, histogram: tuple[tuple[str, int], ...]) -> str:
    """A bar chart of |error| per decade, inline SVG."""
    width, height, bar = 520, 150, 46
    largest = max((count for _, count in histogram), default=0) or 1
    bars = []
    for position, (label, count) in enumerate(histogram):
        bar_height = round((height - 40) * count / largest)
        x, y = 10 + position * (bar + 4), height - 25 - bar_height
        middle = x + bar / 2
        bars.append(f'<rect x="{x}" y="{y}" width="{bar}" height="{bar_height}" fill="#d73027"/>'
                    f'<text x="{middle}" y="{height - 10}" font-size="10" text-anchor="middle">{_text(label)}</text>'
                    f'<text x="{middle}" y="{y - 3}" font-size="10" text-anchor="middle">{count}</text>')
    return (f"<p>{_text(name)}: |error| histogram</p>"
            f'<svg width="{width}" height="{height}" role="img">{"".join(bars)}</svg>')


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
            f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>{body}</body></html>\n")
