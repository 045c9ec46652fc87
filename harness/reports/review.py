"""The golden review as a reviewer reads it: text for a terminal, Markdown for a pull-request comment or
$GITHUB_STEP_SUMMARY. Both views share one list of rows (change, subject, detail) per golden.

Everything that came from a file (ids, file names, manifest fields, op names, messages) is printed with
control characters escaped (reports.text.printable); Markdown also escapes its own syntax, so a crafted
name can neither forge a line nor a table cell nor a link.
"""

from __future__ import annotations

import re

from harness.judging.compare import TensorComparison
from harness.judging.review import ArtifactChange, ArtifactSide, FileChange, GoldenChange, Review
from harness.judging.structure import ARROW
from harness.reports.text import counted, printable
from harness.verdicts import TensorStatus

Row = tuple[str, str, str]  # (change, subject, detail)
RECURRENCE_GONE = "RECURRENCE GONE"
ALARMS = (RECURRENCE_GONE, "refused", "does not load")
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]<>#!|~&])")


def review_lines(review: Review) -> list[str]:
    """The review as text: a header, one block per changed golden, then the files."""
    lines = [f"harness review: {review.base} {ARROW} {review.head}", _summary(review)]
    for golden in review.goldens:
        lines += ["", f"{golden.state}: {golden.config_id}"]
        lines += [f"  {change:<15} {subject + ': ' if subject else ''}{detail}" for change, subject, detail
                  in golden_rows(golden)]
    if review.files:
        lines += ["", "files:"]
        lines += [f"  {file.change:<8} {file.path}{_file_note(file)}" for file in review.files]
    return [printable(line) for line in lines]


def review_markdown(review: Review) -> str:
    """The same findings in Markdown: a heading per golden with a table of its rows, then the files."""
    lines = ["## Golden review", "", f"Base: {_md(review.base)} {ARROW} {_md(review.head)}", "", _md(_summary(review))]
    for golden in review.goldens:
        alarm = " (recurrence gone)" if golden.recurrence_gone else ""
        lines += ["", f"### {golden.state}: {_md(golden.config_id)}{alarm}", "",
                  "| Change | Subject | Detail |", "| --- | --- | --- |"]
        lines += [f"| {_alarm(change)} | {_cell(subject)} | {_cell(detail)} |" for change, subject, detail
                  in golden_rows(golden)]
    if review.files:
        lines += ["", "### Files", "", "| Change | File | Note |", "| --- | --- | --- |"]
        lines += [f"| {file.change} | {_md(file.path)} | {_md(_file_note(file).strip(' ()'))} |"
                  for file in review.files]
    return "\n".join(lines) + "\n"


def golden_rows(golden: GoldenChange) -> list[Row]:
    """Every finding of one golden as (change, subject, detail), in reading order."""
    rows: list[Row] = [("does not load", "", problem) for problem in golden.problems]
    rows += [("manifest", "", fact) for fact in golden.facts]
    rows += [("tensor", tensor.name, _tensor_detail(tensor)) for tensor in golden.tensors]
    rows += [("tolerance", "", line) for line in golden.tolerances]
    rows += [("fingerprint", backend, detail) for backend, detail in golden.fingerprints]
    rows += [("environment", "", line) for line in golden.environment]
    for artifact in golden.artifacts:
        rows += _artifact_rows(artifact)
    return rows


def _summary(review: Review) -> str:
    if not review.changed:
        return f"no golden changed ({counted(review.unchanged, 'golden')} compared), no file added or removed"
    goldens = ", ".join(f"{review.count(state)} {state}" for state in ("changed", "added", "removed")
                        if review.count(state))
    files = ", ".join(f"{sum(1 for f in review.files if f.change == change)} {change}"
                      for change in ("added", "removed", "changed") if any(f.change == change for f in review.files))
    return (f"goldens: {goldens or 'none changed'}, {review.unchanged} unchanged; "
            f"files: {files or 'none added or removed'}")


def _tensor_detail(tensor: TensorComparison) -> str:
    before, after = f"{tensor.expected_shape} {tensor.expected_dtype}", f"{tensor.actual_shape} {tensor.actual_dtype}"
    if tensor.status is TensorStatus.UNEXPECTED:
        return f"new: {after}"
    if tensor.status is TensorStatus.MISSING:
        return f"gone (was {before})"
    if tensor.status is TensorStatus.SHAPE:
        return f"{before} {ARROW} {after}"
    return (f"{tensor.mismatched}/{tensor.total} elements moved, max abs {tensor.max_abs:.3g}, "
            f"max {tensor.max_ulps} ulps")


def _artifact_rows(change: ArtifactChange) -> list[Row]:
    backend, before, after = change.backend, change.before, change.after
    if before is None and after is not None:
        rows: list[Row] = [("artifact", backend, f"new: {_described(after)}")]
    elif after is None and before is not None:
        rows = [("artifact", backend, f"no longer stored (was {_described(before)})")]
    elif before is not None and after is not None:
        kind = f"{before.kind} {ARROW} {after.kind}, " if before.kind != after.kind else f"{after.kind}, "
        rows = [("artifact", backend, f"other bytes: {kind}{before.size} {ARROW} {after.size} bytes, "
                                      f"sha256 {before.sha256[:12]} {ARROW} {after.sha256[:12]}")]
    else:
        return []
    for label, side in (("base", before), ("head", after)):
        if side is not None and side.problem:
            rows.append(("refused", backend, f"{label}: {side.problem}"))
    if change.recurrence_gone:
        had = f" (base: {before.recurrence})" if before is not None and before.recurrence else ""
        rows.append((RECURRENCE_GONE, backend, f"{after.file if after else ''} has no RNN/LSTM/GRU node, loop or "
                                               f"unrolled recurrence{had}"))
    if change.ops_added or change.ops_removed:
        rows.append(("op set", backend, " ".join([*(f"+{op}" for op in change.ops_added),
                                                  *(f"-{op}" for op in change.ops_removed)])))
    rows += [("structure", backend, line) for line in change.structure_lines]
    return rows


def _described(side: ArtifactSide) -> str:
    if side.problem:
        return f"{side.kind}, {side.size} bytes"
    recurrence = f"recurrence {side.recurrence}" if side.recurrence else "no recurrence"
    return f"{side.kind}, {side.size} bytes, {counted(len(side.op_set), 'operation')}, {recurrence}"


def _file_note(file: FileChange) -> str:
    notes = [note for note, applies in ((file.kind, file.kind != "file"),
                                        ("named by no manifest", file.unnamed and file.change != "removed"))
             if applies]
    return f"  ({', '.join(notes)})" if notes else ""


def _md(text: str) -> str:
    """Text from a file as inert Markdown: control characters escaped, then every Markdown syntax character."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", printable(text))


def _alarm(change: str) -> str:
    """What a reviewer must not miss stands out: a lost recurrence, a refused artifact, a golden that does not load."""
    return f"**{_md(change)}**" if change in ALARMS else _md(change)


def _cell(text: str) -> str:
    return _md(text) if text else " "
