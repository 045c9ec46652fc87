"""What changed between two versions of a golden directory, as findings a reviewer can read: per golden
the config, the tensors that moved (max abs and ulps), the calibrated tolerance, the fingerprints, the
environment and the stored artifacts (their structure recomputed from both sides' bytes); and every file
added, removed or changed. Pure: goldens and artifact bytes in, value objects out (the session reads them).

A binary golden change becomes as reviewable as a text snapshot: nothing here runs an artifact or imports
a user's module; artifacts only pass the store's gate, which parses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.errors import GoldenError
from harness.judging.compare import TensorComparison, compare_outputs
from harness.judging.structure import ARROW, OnnxStructure, onnx_structure, structure_diff
from harness.model.environment import environment_differences
from harness.model.tolerance import BITWISE
from harness.store.artifacts import ArtifactEntry
from harness.store.golden import Golden
from harness.verdicts import TensorStatus


@dataclass(frozen=True, kw_only=True)
class ArtifactSide:
    """One side's stored artifact of one backend: what its manifest says, and what its bytes contain
    (`problem` says why they could not be read or were refused; then op_set, recurrence and structure are empty)."""

    file: str
    kind: str
    size: int
    sha256: str
    op_set: frozenset[str] = frozenset()
    recurrence: str = ""  # the recurrence the gate found ("RNN", "Loop", ...); "" when none
    structure: OnnxStructure | None = None  # ONNX only
    problem: str = ""


@dataclass(frozen=True, kw_only=True)
class ArtifactChange:
    """A backend's stored artifact on both sides (None: not stored there), whose bytes differ."""

    backend: str
    before: ArtifactSide | None
    after: ArtifactSide | None
    built_in_rnn: bool  # the golden's config is a bare torch.nn RNN: its artifact must hold a recurrence

    @property
    def structure_lines(self) -> tuple[str, ...]:
        """The structural diff of the two sides' bytes (ONNX), empty when either has no structure."""
        if self.before is None or self.after is None or self.before.structure is None or self.after.structure is None:
            return ()
        return structure_diff(self.before.structure, self.after.structure)

    @property
    def ops_added(self) -> tuple[str, ...]:
        return tuple(sorted(self._op_set(self.after) - self._op_set(self.before))) if self._both_read else ()

    @property
    def ops_removed(self) -> tuple[str, ...]:
        return tuple(sorted(self._op_set(self.before) - self._op_set(self.after))) if self._both_read else ()

    @property
    def recurrence_gone(self) -> bool:
        """The new bytes hold no recurrence where the old ones did, or where the config is a built-in RNN."""
        after = self.after
        if after is None or after.problem:
            return False
        had = self.before is not None and not self.before.problem and bool(self.before.recurrence)
        return not after.recurrence and (had or self.built_in_rnn)

    @property
    def _both_read(self) -> bool:
        return self.before is not None and self.after is not None and not self.before.problem and not self.after.problem

    @staticmethod
    def _op_set(side: ArtifactSide | None) -> frozenset[str]:
        return side.op_set if side is not None else frozenset()


@dataclass(frozen=True, kw_only=True)
class GoldenSide:
    """One side's golden of one config id: loaded, or why it does not load; and its stored artifacts, read
    from the manifest even when the golden itself does not load (so a refused artifact is still shown)."""

    golden: Golden | None
    problem: str = ""
    artifacts: dict[str, ArtifactSide] | None = field(default_factory=dict)  # None: its manifest is unreadable


@dataclass(frozen=True, kw_only=True)
class GoldenChange:
    """Everything that differs in one golden; `state` is added, removed or changed."""

    config_id: str
    state: str
    problems: tuple[str, ...] = ()  # "<side>: <why it does not load>"
    facts: tuple[str, ...] = ()  # config, inputs, weights and provenance changes
    tensors: tuple[TensorComparison, ...] = ()  # reference tensors that are not bitwise equal (or new, or gone)
    tolerances: tuple[str, ...] = ()
    fingerprints: tuple[tuple[str, str], ...] = ()  # (backend, "before → after")
    environment: tuple[str, ...] = ()
    artifacts: tuple[ArtifactChange, ...] = ()

    @property
    def recurrence_gone(self) -> tuple[str, ...]:
        return tuple(change.backend for change in self.artifacts if change.recurrence_gone)


@dataclass(frozen=True, kw_only=True)
class FileChange:
    """A file under the golden directory (path relative to it) added, removed or changed; `unnamed` when no
    manifest on its side names it (a file no golden accounts for); `kind` "file", "symlink" or "special"."""

    path: str
    change: str
    unnamed: bool = False
    kind: str = "file"


@dataclass(frozen=True, kw_only=True)
class Review:
    """The whole comparison: base -> head, the goldens that changed, and the files."""

    base: str
    head: str
    goldens: tuple[GoldenChange, ...]
    unchanged: int
    files: tuple[FileChange, ...]

    @property
    def changed(self) -> bool:
        return bool(self.goldens or self.files)

    def count(self, state: str) -> int:
        return sum(1 for golden in self.goldens if golden.state == state)


def artifact_side(entry: ArtifactEntry, data: bytes | None, problem: str = "", *, where: str) -> ArtifactSide:
    """One stored artifact as a reviewer sees it: what its manifest says and, when its bytes could be read
    (`data`; else `problem` says why not), what the store's gate finds in them: their operations, their
    recurrence and (ONNX) their structure. A gate's refusal is the side's problem, never an exception."""
    from harness.store.gates import verify_artifact

    if data is None:
        return ArtifactSide(file=entry.file, kind=entry.kind, size=entry.size, sha256=entry.sha256,
                            problem=problem or "not read")
    try:  # built_in_rnn=False: a missing recurrence is a finding here (ArtifactChange.recurrence_gone), not a refusal
        facts = verify_artifact(entry.kind, data, where=where, built_in_rnn=False)
        structure = _structure(entry.kind, data, facts.structure)
    except GoldenError as error:
        return ArtifactSide(file=entry.file, kind=entry.kind, size=entry.size, sha256=entry.sha256,
                            problem=error.message)
    return ArtifactSide(file=entry.file, kind=entry.kind, size=entry.size, sha256=entry.sha256,
                        op_set=frozenset(facts.op_set), recurrence=facts.recurrence, structure=structure)


def _structure(kind: str, data: bytes, recorded: dict[str, Any] | None) -> OnnxStructure | None:
    """The gate's structure of an ONNX artifact (recomputed from its bytes when the gate gave none)."""
    try:
        if recorded is not None:
            return OnnxStructure.from_dict(recorded)
        return onnx_structure(data) if kind == "onnx" else None
    except ValueError as error:
        raise GoldenError(f"not a readable ONNX model: {error}") from None


def golden_change(config_id: str, before: GoldenSide | None, after: GoldenSide | None) -> GoldenChange:
    """What differs from `before` (the base) to `after` (the head); a side is None when it has no such golden."""
    state = "added" if before is None else "removed" if after is None else "changed"
    problems = tuple(f"{side}: {golden_side.problem}"
                     for side, golden_side in (("base", before), ("head", after))
                     if golden_side is not None and golden_side.golden is None)
    old = before.golden if before is not None else None
    new = after.golden if after is not None else None
    present = new or old
    built_in = present.config.plain_rnn if present is not None else False  # neither loads: only a lost recurrence shows
    sides = [side.artifacts for side in (before, after) if side is not None]
    artifacts = () if any(known is None for known in sides) else _artifact_changes(  # None: a manifest unread
        before.artifacts or {} if before else {}, after.artifacts or {} if after else {}, built_in)
    if old is None or new is None:  # one side only (added, removed), or a side that does not load: no tensors compared
        tensors = compare_outputs({} if old is None else old.tensors, {} if new is None else new.tensors,
                                  BITWISE) if state != "changed" else ()
        return GoldenChange(config_id=config_id, state=state, problems=problems, tensors=tensors, artifacts=artifacts)
    return GoldenChange(
        config_id=config_id, state=state, problems=problems, facts=tuple(_fact_lines(old, new)),
        tensors=tuple(tensor for tensor in compare_outputs(old.tensors, new.tensors, BITWISE)
                      if tensor.status is not TensorStatus.IDENTICAL),
        tolerances=tuple(_tolerance_lines(old, new)), fingerprints=tuple(_fingerprint_lines(old, new)),
        environment=tuple(line for context in (False, True)
                          for line in environment_differences(old.environment, new.environment, context=context)),
        artifacts=artifacts,
    )


def is_empty(change: GoldenChange) -> bool:
    """Both sides load and nothing a reviewer would read differs."""
    return not (change.problems or change.facts or change.tensors or change.tolerances or change.fingerprints
                or change.environment or change.artifacts) and change.state == "changed"


def _artifact_changes(before: dict[str, ArtifactSide], after: dict[str, ArtifactSide], built_in_rnn: bool
                      ) -> tuple[ArtifactChange, ...]:
    changes = []
    for backend in sorted(before.keys() | after.keys()):
        old, new = before.get(backend), after.get(backend)
        if old is not None and new is not None and old.sha256 == new.sha256 and old.problem == new.problem:
            continue
        changes.append(ArtifactChange(backend=backend, before=old, after=new, built_in_rnn=built_in_rnn))
    return tuple(changes)


def _fact_lines(old: Golden, new: Golden) -> list[str]:
    lines = []
    before, after = old.config.to_dict(), new.config.to_dict()
    for key in [*before, *(key for key in after if key not in before)]:
        if before.get(key) != after.get(key):
            lines.append(f"config {key}: {_shown(before.get(key))} {ARROW} {_shown(after.get(key))}")
    if old.config.content_hash != new.config.content_hash:
        lines.append(f"config hash {old.config.content_hash[:12]} {ARROW} {new.config.content_hash[:12]}")
    for label, was, now in (("inputs sha256", old.inputs_sha256, new.inputs_sha256),
                            ("weights sha256", old.weights_sha256, new.weights_sha256),
                            ("recorded by", old.recorded_by, new.recorded_by),
                            ("recorded at", old.recorded_at, new.recorded_at)):
        if was != now:
            short = label.endswith("sha256")
            lines.append(f"{label} {was[:12] if short else was} {ARROW} {now[:12] if short else now}")
    return lines


def _tolerance_lines(old: Golden, new: Golden) -> list[str]:
    was, now = old.calibrated_tolerance(), new.calibrated_tolerance()
    if was == now:
        return []
    return [f"calibrated tolerance {was.describe() if was else 'none'} {ARROW} {now.describe() if now else 'none'}"]


def _fingerprint_lines(old: Golden, new: Golden) -> list[tuple[str, str]]:
    lines = []
    backends = [*old.backend_fingerprints, *(b for b in new.backend_fingerprints if b not in old.backend_fingerprints)]
    for backend in backends:
        was, now = old.backend_fingerprints.get(backend), new.backend_fingerprints.get(backend)
        if was == now:
            continue
        before, after = _fingerprint(was), _fingerprint(now)
        if before == after:  # the same outputs under other settings (torch.compile's mode, ...)
            before, after = (f"settings {(fingerprint or {}).get('settings')}" for fingerprint in (was, now))
        lines.append((backend, f"{before} {ARROW} {after}"))
    return lines


def _fingerprint(fingerprint: dict[str, Any] | None) -> str:
    """A backend fingerprint in a few words: its status, and how far its outputs sat from the reference."""
    if fingerprint is None:
        return "none"
    if fingerprint.get("status") != "ok":
        return f"{fingerprint.get('status')}: {fingerprint.get('reason', '')}"
    ulps, largest = fingerprint.get("max_ulps_to_reference"), fingerprint.get("max_abs_to_reference")
    distance = f"{ulps} ulps, max abs {largest:.3g}" if ulps else "bitwise equal to the reference"
    return f"ok, {distance}, sha256 {str(fingerprint.get('sha256', ''))[:12]}"


def _shown(value: object) -> str:
    return "absent" if value is None else str(value)
