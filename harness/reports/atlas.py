"""`harness atlas`: JSON replay reports of one suite under several onnxruntime releases, as a release x cell
matrix (docs/atlas.md).

Each entry says how a cell computed under that release against the bits the golden recorded for its backend:
bitwise as recorded, moved by N ulps (passing or failing), ERROR with the reason, unsupported, or not run.
Per cell: the first release (oldest first) where it differs from the recording, and the first later release
where it is back. Per release: one summary line. The views (terminal, Markdown, HTML) share this one model.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import EXIT_DRIFT, EXIT_OK, HarnessError
from harness.reports.merge import environment_label, load_report
from harness.reports.text import counted
from harness.verdicts import Verdict


class Mark(enum.Enum):
    """One cell under one release, against the bits recorded with the golden."""

    AS_RECORDED = "="
    MOVED = "moved"  # other bits, still passing
    FAILING = "FAILING"  # computed, and fails against the golden (DRIFT, SHAPE, ...)
    ERROR = "ERROR"  # did not compute: the model does not load or run
    UNSUPPORTED = "unsupported"
    NOT_RUN = "-"  # slow, unavailable, or absent from that release's report

    @property
    def computed(self) -> bool:
        return self in (Mark.AS_RECORDED, Mark.MOVED, Mark.FAILING)


@dataclass(frozen=True, kw_only=True)
class Entry:
    mark: Mark
    verdict: str
    ulps: int | None = None  # from the recorded bits, where the report knows them
    reason: str = ""  # the first line of why it did not compute
    sha256: str = ""  # the outputs' digest, computed cells only

    @property
    def signature(self) -> tuple[str, str]:
        """Equal signatures: the same outcome (the same bits, or the same kind of not computing)."""
        return self.mark.value, self.sha256 if self.mark.computed else ""

    def short(self) -> str:
        """A matrix entry: =, ~N (moved N ulps), !N (failing), ERROR, unsup., -."""
        ulps = "?" if self.ulps is None else str(self.ulps)
        return {Mark.MOVED: f"~{ulps}", Mark.FAILING: f"!{ulps}", Mark.UNSUPPORTED: "unsup."}.get(self.mark,
                                                                                                  self.mark.value)

    def describe(self) -> str:
        ulps = "by ? ulps" if self.ulps is None else f"by {self.ulps} ulps"
        return {Mark.AS_RECORDED: "bitwise as recorded", Mark.MOVED: f"moved {ulps}, passing",
                Mark.FAILING: f"{self.verdict} (moved {ulps})", Mark.ERROR: f"ERROR: {self.reason}",
                Mark.UNSUPPORTED: f"unsupported: {self.reason}", Mark.NOT_RUN: f"not run ({self.verdict})"}[self.mark]


@dataclass(frozen=True, kw_only=True)
class Release:
    label: str
    onnxruntime: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Span:
    first: str  # release labels, inclusive
    last: str
    entry: Entry


@dataclass(frozen=True, kw_only=True)
class Row:
    config: str
    backend: str
    group: str  # the config's kind: its id up to the hidden size (rnn, lstm-..., a user's model)
    entries: dict[str, Entry]  # release label -> entry, every release
    first_changed: str | None  # the oldest release whose outcome differs from the recording's
    back_in: str | None  # the first later release where it is as recorded again
    spans: tuple[Span, ...]

    @property
    def changed(self) -> bool:
        return self.first_changed is not None


@dataclass(frozen=True, kw_only=True)
class Atlas:
    releases: tuple[Release, ...]  # oldest first
    rows: tuple[Row, ...]
    recorded_under: tuple[str, ...]  # the onnxruntime releases the goldens were recorded under
    not_replayed: tuple[str, ...]  # "RELEASE: why", as the atlas tool passed them

    @property
    def newest_failing(self) -> tuple[Row, ...]:
        newest = self.releases[-1].label
        return tuple(row for row in self.rows if row.entries[newest].mark in (Mark.FAILING, Mark.ERROR))

    @property
    def exit_code(self) -> int:
        """1 when the newest release fails a cell (what an upgrade would meet); older releases are findings."""
        return EXIT_DRIFT if self.newest_failing else EXIT_OK


def release_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def build_atlas(paths: Sequence[Path], *, not_replayed: Sequence[str] = ()) -> Atlas:
    """The atlas of these reports, one release each, ordered by their onnxruntime version."""
    if not paths:
        raise HarnessError("atlas needs at least one report")
    documents: dict[str, dict[str, Any]] = {}
    releases: list[Release] = []
    for path in paths:
        document = load_report(path)
        label = environment_label(document)
        if label in documents:
            raise HarnessError(f"{path}: release label {label!r} is already taken by {releases_source(releases, label)}"
                               "; give each report its own --label")
        documents[label] = document
        releases.append(Release(label=label, source=str(path),
                                onnxruntime=str(document["environment"]["packages"].get("onnxruntime", "?"))))
    releases.sort(key=lambda release: (release_key(release.onnxruntime), release.label))
    recorded = _recorded_releases(documents)
    keys = list(dict.fromkeys((cell["config"], cell["backend"]) for label in documents
                              for cell in documents[label]["cells"]))
    cells = {(label, cell["config"], cell["backend"]): cell for label, document in documents.items()
             for cell in document["cells"]}
    rows = tuple(_row(config, backend, [(release, cells.get((release.label, config, backend)))
                                        for release in releases], recorded.get(config, ""))
                 for config, backend in keys)
    return Atlas(releases=tuple(releases), rows=rows, recorded_under=tuple(sorted(set(recorded.values()),
                                                                                key=release_key)),
                 not_replayed=tuple(not_replayed))


def releases_source(releases: list[Release], label: str) -> str:
    return next(release.source for release in releases if release.label == label)


def config_group(config: str) -> str:
    """The config's kind: its id up to the hidden size (rnn-h8-s0 -> rnn), else its first word."""
    found = re.match(r"(.+?)-h\d+(?:-|$)", config)
    return found.group(1) if found else config.split("-")[0]


def _recorded_releases(documents: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Per config, the onnxruntime its golden was recorded under: a report's environment change line
    'onnxruntime A -> B' says A; no such line says the report's own release."""
    votes: dict[str, Counter[str]] = {}
    for document in documents.values():
        own = str(document["environment"]["packages"].get("onnxruntime", "?"))
        for config in document["configs"]:
            lines = document["environment_changes"].get(config, [])
            found = next((re.match(r"onnxruntime (\S+) -> ", line) for line in lines
                          if line.startswith("onnxruntime ")), None)
            votes.setdefault(config, Counter())[found.group(1) if found else own] += 1
    return {config: counts.most_common(1)[0][0] for config, counts in votes.items()}


def _entry(cell: dict[str, Any] | None) -> Entry:
    if cell is None:
        return Entry(mark=Mark.NOT_RUN, verdict="absent")
    verdict = Verdict(cell["verdict"])
    reason = (cell["reason"] or "").splitlines()[0] if cell["reason"] else ""
    if verdict in (Verdict.ERROR, Verdict.MISSING):
        return Entry(mark=Mark.ERROR, verdict=verdict.value, reason=reason or verdict.value)
    if verdict is Verdict.UNSUPPORTED:
        return Entry(mark=Mark.UNSUPPORTED, verdict=verdict.value, reason=reason)
    if verdict.not_computed:
        return Entry(mark=Mark.NOT_RUN, verdict=verdict.value)
    past = cell["past"] or {}
    unchanged = past.get("status") == "unchanged"
    ulps = 0 if unchanged else past.get("max_ulps") if past.get("status") == "moved" else None
    mark = Mark.FAILING if verdict.failing else Mark.AS_RECORDED if unchanged else Mark.MOVED
    return Entry(mark=mark, verdict=verdict.value, ulps=ulps, sha256=cell["outputs_sha256"])


def _row(config: str, backend: str, found: list[tuple[Release, dict[str, Any] | None]], recorded: str) -> Row:
    entries = {release.label: _entry(cell) for release, cell in found}
    labels = [release.label for release, _ in found]
    entries = _without_fingerprint(entries, labels, [r.label for r, _ in found if r.onnxruntime == recorded])
    at_recording = [entries[r.label] for r, _ in found if r.onnxruntime == recorded]
    as_recorded = [entry for entry in entries.values() if entry.mark is Mark.AS_RECORDED]
    baseline = (at_recording or as_recorded or [entries[labels[-1]]])[0].signature
    changed = [label for label in labels if entries[label].signature != baseline]
    first = changed[0] if changed else None
    back = next((label for label in labels[labels.index(first) + 1:] if entries[label].signature == baseline),
                None) if first else None
    spans: list[Span] = []
    for label in labels:
        if spans and spans[-1].entry.signature == entries[label].signature:
            spans[-1] = Span(first=spans[-1].first, last=label, entry=spans[-1].entry)
        else:
            spans.append(Span(first=label, last=label, entry=entries[label]))
    return Row(config=config, backend=backend, group=config_group(config), entries=entries, first_changed=first,
               back_in=back, spans=tuple(spans))


def _without_fingerprint(entries: dict[str, Entry], labels: list[str], recording: list[str]) -> dict[str, Entry]:
    """A golden with no fingerprint of this backend leaves a computed entry 'moved by ?': it is as recorded
    where its bits equal those under the recording release (else the newest release that computed)."""
    unknown = [label for label in labels if entries[label].mark is Mark.MOVED and entries[label].ulps is None]
    if not unknown:
        return entries
    computed = [label for label in recording + labels[::-1] if entries[label].mark.computed]
    reference = entries[computed[0]].sha256 if computed else ""
    return {label: Entry(mark=Mark.AS_RECORDED, verdict=entry.verdict, ulps=0, sha256=entry.sha256)
            if label in unknown and entry.sha256 == reference else entry for label, entry in entries.items()}


def release_counts(atlas: Atlas, label: str) -> Counter[Mark]:
    return Counter(row.entries[label].mark for row in atlas.rows)


def release_summary(atlas: Atlas, release: Release) -> str:
    """One line per release: its outcomes, and what changed from the release before it."""
    counts = release_counts(atlas, release.label)
    computed = sum(count for mark, count in counts.items() if mark.computed)
    moved = [row.entries[release.label].ulps for row in atlas.rows if row.entries[release.label].mark is Mark.MOVED]
    if computed and counts[Mark.AS_RECORDED] == computed and not counts[Mark.ERROR]:
        outcome = f"bitwise as recorded on all {computed} computed cells"
    else:
        worst = max((ulps for ulps in moved if ulps is not None), default=None)
        parts = [f"{counts[Mark.AS_RECORDED]} of {computed} computed cells bitwise as recorded",
                 f"{counts[Mark.MOVED]} moved" + (f" (up to {worst} ulps)" if worst is not None else "")
                 if counts[Mark.MOVED] else "", f"{counts[Mark.FAILING]} FAILING" if counts[Mark.FAILING] else "",
                 f"{counts[Mark.ERROR]} ERROR" if counts[Mark.ERROR] else ""]
        outcome = ", ".join(part for part in parts if part)
    index = atlas.releases.index(release)
    if index == 0:
        since = "oldest release"
    else:
        before = atlas.releases[index - 1].label
        differ = sum(row.entries[before].signature != row.entries[release.label].signature for row in atlas.rows)
        verb = "differs" if differ == 1 else "differ"
        since = f"{counted(differ, 'cell')} {verb} from {before}" if differ else f"same outcomes as {before}"
    return f"{outcome}; {counts[Mark.UNSUPPORTED]} unsupported; {since}"


def row_summary(row: Row) -> str:
    """Where the cell differs from the recording: each run of releases with one outcome."""
    return "; ".join(f"{span.first}{'' if span.first == span.last else '..' + span.last}: {span.entry.describe()}"
                     for span in row.spans)
