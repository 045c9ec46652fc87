"""The atlas (reports.atlas) as terminal lines, Markdown and one self-contained HTML page.

Every view shows the same three things: one line per release, each changed cell with the first release where
it changed and where it is back, and the release x cell matrix (changed cells only in text; every cell in HTML,
grouped by config kind). Text from reports is made printable, and escaped for Markdown or HTML.
"""

from __future__ import annotations

from html import escape

from harness.reports.atlas import Atlas, Entry, Mark, Row, release_summary, row_summary
from harness.reports.text import counted, printable, printable_lines, text_table

LEGEND = ("= bitwise as recorded with the golden; ~N moved N ulps, passing; !N moved N ulps, failing; "
          "ERROR did not run; unsup. unsupported; - not run")
COLOURS = {Mark.AS_RECORDED: "#1a9850", Mark.MOVED: "#fee08b", Mark.FAILING: "#d73027", Mark.ERROR: "#67001f",
           Mark.UNSUPPORTED: "#bdbdbd", Mark.NOT_RUN: "#f0f0f0"}
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222} h1{font-size:20px} h2{font-size:16px;margin-top:24px}
table.grid{border-collapse:collapse} table.grid th,table.grid td{border:1px solid #fff;padding:2px 6px;font-size:12px;
 white-space:nowrap;text-align:center} table.grid th{background:#eee;position:sticky;top:0}
table.grid th.row{text-align:left;position:static} tr.group th{background:#ddd;text-align:left;position:static}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;font-size:12px}
"""


def headline(atlas: Atlas) -> str:
    releases = atlas.releases
    recorded = ", ".join(atlas.recorded_under) or "?"
    return (f"harness atlas: {counted(len(releases), 'release')} of onnxruntime ({releases[0].onnxruntime} .. "
            f"{releases[-1].onnxruntime}), {counted(len(atlas.rows), 'cell')}; goldens recorded under "
            f"onnxruntime {recorded}")


def verdict_line(atlas: Atlas) -> str:
    changed = sum(row.changed for row in atlas.rows)
    status = "FAILED" if atlas.exit_code else "OK"
    newest = atlas.releases[-1].label
    return (f"{status}: {changed} of {counted(len(atlas.rows), 'cell')} differ from the recording in some release; "
            f"{len(atlas.newest_failing)} failing in the newest ({newest}); exit {atlas.exit_code}")


def atlas_lines(atlas: Atlas) -> list[str]:
    """The terminal view; every line printable (labels, ids and reasons come from the reports)."""
    lines = [headline(atlas)]
    lines += [f"  not replayed: {item}" for item in atlas.not_replayed]
    lines += ["", "Per release:"]
    lines += [f"  {release.label}: {release_summary(atlas, release)}" for release in atlas.releases]
    changed = [row for row in atlas.rows if row.changed]
    lines += ["", f"Cells that differ from the recording in some release ({len(changed)}):"]
    lines += [f"  {row.config} x {row.backend}: {_first_and_back(row)}; {row_summary(row)}" for row in changed]
    if changed:
        header = ["cell", *(release.label for release in atlas.releases)]
        table = [[f"{row.config} x {row.backend}", *(row.entries[r.label].short() for r in atlas.releases)]
                 for row in changed]
        lines += ["", LEGEND, *text_table(header, table)]
    lines += ["", verdict_line(atlas)]
    return printable_lines(lines)


def _first_and_back(row: Row) -> str:
    back = f"as recorded again from {row.back_in}" if row.back_in else "not back"
    return f"first changed in {row.first_changed}, {back}"


def atlas_markdown(atlas: Atlas) -> str:
    lines = [f"## {_md(headline(atlas))}", ""]
    lines += [f"- not replayed: {_md(item)}" for item in atlas.not_replayed]
    lines += ["", "| release | onnxruntime | summary |", "|---|---|---|"]
    lines += [f"| {_code(r.label)} | {_md(r.onnxruntime)} | {_md(release_summary(atlas, r))} |" for r in atlas.releases]
    changed = [row for row in atlas.rows if row.changed]
    lines += ["", f"### Cells that differ from the recording in some release ({len(changed)})", ""]
    if changed:
        lines += ["| cell | first changed | as recorded again from | outcomes |", "|---|---|---|---|"]
        lines += [f"| {_code(row.config)} x {_code(row.backend)} | {_md(row.first_changed or '')} | "
                  f"{_md(row.back_in or 'not back')} | {_md(row_summary(row))} |" for row in changed]
        releases = [release.label for release in atlas.releases]
        lines += ["", _md(LEGEND), "", f"| cell | {' | '.join(map(_md, releases))} |", f"|---|{'---|' * len(releases)}"]
        lines += [f"| {_code(row.config)} x {_code(row.backend)} | "
                  f"{' | '.join(_md(row.entries[label].short()) for label in releases)} |" for row in changed]
    else:
        lines.append("none: every cell computes the same in every release")
    return "\n".join([*lines, "", _md(verdict_line(atlas))]) + "\n"


def _md(text: str) -> str:
    """Text for a Markdown table cell: printable, and no `|` that would end the cell."""
    return printable(text).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_md(text).replace('`', chr(39))}`"


def atlas_html(atlas: Atlas) -> str:
    """One page, no network: a summary per release, then the grid (columns releases, rows cells by config kind)."""
    releases = atlas.releases
    header = "".join(f"<th>{_text(release.label)}</th>" for release in releases)
    rows = []
    for group in dict.fromkeys(row.group for row in atlas.rows):
        rows.append(f'<tr class="group"><th colspan="{len(releases) + 2}">{_text(group)}</th></tr>')
        for row in (row for row in atlas.rows if row.group == group):
            first = _text(row.first_changed or "") + (f" (back {_text(row.back_in)})" if row.back_in else "")
            cells = "".join(_grid_cell(row.entries[release.label], release.label) for release in releases)
            rows.append(f'<tr><th class="row">{_text(row.config)} x {_text(row.backend)}</th>{cells}'
                        f"<td>{first}</td></tr>")
    summaries = "".join(f"<li><b>{_text(release.label)}</b>: {_text(release_summary(atlas, release))}</li>"
                        for release in releases)
    missing = "".join(f"<li>not replayed: {_text(item)}</li>" for item in atlas.not_replayed)
    legend = "".join(f'<span style="background:{colour};color:{_ink(mark)}">{_text(mark.value)}</span>'
                     for mark, colour in COLOURS.items())
    body = (f"<h1>{_text(headline(atlas))}</h1><p>{_text(verdict_line(atlas))}</p>"
            f"<h2>Per release</h2><ul>{summaries}{missing}</ul>"
            f'<h2>Release x cell</h2><p class="legend">{legend}</p><p>{_text(LEGEND)}. Hover an entry for its '
            f"verdict and reason.</p>"
            f'<table class="grid"><tr><th>cell</th>{header}<th>first changed</th></tr>{"".join(rows)}</table>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>harness atlas</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def _grid_cell(entry: Entry, release: str) -> str:
    title = _text(f"{release}: {entry.describe()}")
    return (f'<td style="background:{COLOURS[entry.mark]};color:{_ink(entry.mark)}" title="{title}">'
            f"{_text(entry.short())}</td>")


def _ink(mark: Mark) -> str:
    return "#fff" if mark in (Mark.AS_RECORDED, Mark.FAILING, Mark.ERROR) else "#222"


def _text(value: object) -> str:
    """Text for HTML, in an element or an attribute: printable first, then markup escaped (quotes too)."""
    return escape(printable(str(value)))
