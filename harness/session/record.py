"""Recording goldens: every backend's own fingerprint next to the reference, and what a forced
re-record changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.backends.base import Artifact, Backend, NoAutogradError
from harness.backends.capture import first_line, full_message
from harness.judging.compare import compare_outputs
from harness.judging.judge import Execution
from harness.model.environment import environment_differences
from harness.model.hashing import arrays_sha256
from harness.model.tolerance import BITWISE
from harness.session.execution import execute
from harness.store.cache import ExportCache
from harness.store.golden import Golden
from harness.verdicts import TensorStatus

if TYPE_CHECKING:  # building a case imports torch; the session imports it only to build one
    from harness.model.case import Case

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True, kw_only=True)
class RecordResult:
    """What one record wrote, and what it replaced."""

    config_id: str
    path: str
    replaced: bool
    corrupt: str = ""  # why the golden it replaced could not be read, when it could not
    changes: tuple[str, ...] = ()
    fingerprints: dict[str, str] = field(default_factory=dict)  # backend -> one-line status
    cleaned: tuple[str, ...] = ()  # leftovers of interrupted writes removed before this one

    @classmethod
    def of(cls, config_id: str, path: Path, golden: Golden, *, previous: Golden | None, corrupt: str,
           changes: tuple[str, ...], cleaned: tuple[Path, ...] = ()) -> RecordResult:
        summary = {name: fingerprint_line(fingerprint) for name, fingerprint in golden.backend_fingerprints.items()}
        return cls(config_id=config_id, path=str(path), replaced=previous is not None or bool(corrupt),
                   corrupt=corrupt, changes=changes, fingerprints=summary, cleaned=tuple(map(str, cleaned)))


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """What the backends computed at record time: their fingerprints, the outputs of those that are not
    bitwise the reference, and the artifacts the exporting ones ran (stored beside the golden)."""

    fingerprints: dict[str, dict[str, Any]]
    backend_tensors: dict[str, Outputs]
    artifacts: dict[str, Artifact]


def fingerprint_backends(
    case: Case, backends: Sequence[Backend], reference: Outputs, *, include_slow: bool, cache: ExportCache | None = None
) -> Recorded:
    """Each backend's own fingerprint against the reference, the outputs of those that are not bitwise
    equal to it (kept in the golden to measure their own movement later), and each artifact that ran."""
    recorded = Recorded(fingerprints={}, backend_tensors={}, artifacts={})
    reference_sha256 = arrays_sha256(reference)
    for backend in backends:
        if backend.is_slow(case.config) and not include_slow:
            continue
        fingerprint, execution = _fingerprint(case, backend, reference, cache)
        recorded.fingerprints[backend.name] = fingerprint
        if execution is None:
            continue
        if fingerprint["sha256"] != reference_sha256:
            recorded.backend_tensors[backend.name] = execution.first
        if execution.artifact is not None:
            recorded.artifacts[backend.name] = execution.artifact
    return recorded


def _fingerprint(case: Case, backend: Backend, reference: Outputs, cache: ExportCache | None
                 ) -> tuple[dict[str, Any], Execution | None]:
    """A backend's own fingerprint: sha256 of its outputs and its distance to the reference."""
    try:
        execution = execute(case, backend, cache)
    except Exception as error:  # recorded as a fact about the backend, like a run would report it
        # A user's model that a backend cannot take is recorded as unsupported for that model, with the whole
        # upstream error: later runs report it as such (exit 0), and say so when it fails otherwise or runs.
        # (no autograd is the backend's, not the model's: a known limitation, as for the built-in configs)
        user_model = bool(case.config.model) and not isinstance(error, NoAutogradError)
        known = backend.known_limitation(case.config) or isinstance(error, NoAutogradError) or user_model
        detail = {"detail": full_message(error)} if user_model else {}
        return {"status": "unsupported" if known else "error", "reason": first_line(error), **detail}, None
    comparisons = compare_outputs(reference, execution.first, BITWISE)
    if any(c.layout_problem for c in comparisons):
        status = "unsupported" if backend.known_limitation(case.config) else "error"
        return {"status": status, "reason": "outputs differ in shape from the reference"}, None
    settings = backend_settings(backend)
    return {
        **({"settings": settings} if settings else {}),
        "status": "ok",
        "sha256": arrays_sha256(execution.first),
        "max_ulps_to_reference": max(c.max_ulps for c in comparisons),
        "max_abs_to_reference": max(c.max_abs for c in comparisons),
        **({"relations": _relations(case, backend)} if case.config.relations else {}),
    }, execution


def _relations(case: Case, backend: Backend) -> dict[str, Any]:
    """Whether each of the case's relations held bitwise on the backend (judged later runs compare with it)."""
    from harness.session.relations import recorded_relations

    return recorded_relations(case, backend)


def backend_settings(backend: Backend) -> dict[str, Any]:
    """What a backend says about its own settings (torch.compile: backend, mode, fullgraph, dynamic)."""
    settings = getattr(backend, "settings", None)
    return dict(settings()) if callable(settings) else {}


def fingerprint_line(fingerprint: dict[str, Any]) -> str:
    if fingerprint["status"] == "unsupported" and "detail" in fingerprint:
        return f"unsupported for this model, recorded (later runs report it and pass): {fingerprint['reason']}"
    if fingerprint["status"] != "ok":
        return f"{fingerprint['status']}: {fingerprint['reason']}"
    if fingerprint["max_ulps_to_reference"] == 0:
        return "bitwise equal to the reference"
    return (f"{fingerprint['max_ulps_to_reference']} ulps (max abs {fingerprint['max_abs_to_reference']:.1e}) "
            "from the reference")


def artifact_changes(old: Golden, new: Golden) -> list[str]:
    """What a re-record changed in the stored artifacts: new, gone, or other bytes (with the ONNX structure diff)."""
    lines = []
    for backend in sorted(set(old.artifacts) | set(new.artifacts)):
        before, after = old.artifacts.get(backend), new.artifacts.get(backend)
        if after is None:
            lines.append(f"{backend} artifact: no longer stored")
        elif before is None:
            lines.append(f"{backend} artifact: stored ({after.kind}, {after.size} bytes)")
        elif before.sha256 != after.sha256:
            diff = _structure_lines(before.structure, after.structure)
            lines.append(f"{backend} artifact: other bytes ({before.size} -> {after.size})"
                         + (f"; structure: {'; '.join(diff)}" if diff else ""))
    return lines


def _structure_lines(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[str, ...]:
    if before is None or after is None:
        return ()
    from harness.judging.structure import OnnxStructure, structure_diff

    return structure_diff(OnnxStructure.from_dict(before), OnnxStructure.from_dict(after))


def describe_changes(old: Golden, new: Golden) -> tuple[str, ...]:
    """What a forced re-record changed, one readable line per difference."""
    lines = []
    if old.inputs_sha256 != new.inputs_sha256:
        lines.append("inputs sha256 changed")
    if old.weights_sha256 != new.weights_sha256:
        lines.append("weights sha256 changed")
    tensors = compare_outputs(old.tensors, new.tensors, BITWISE)
    if all(tensor.status is TensorStatus.IDENTICAL for tensor in tensors):
        lines.append("reference tensors: bitwise unchanged")
    for tensor in tensors:
        if tensor.status is TensorStatus.IDENTICAL:
            continue
        if tensor.layout_problem:
            lines.append(f"{tensor.name}: {tensor.expected_shape} {tensor.expected_dtype} -> "
                         f"{tensor.actual_shape} {tensor.actual_dtype}")
        else:
            lines.append(f"{tensor.name}: {tensor.mismatched}/{tensor.total} elements changed, "
                         f"max abs {tensor.max_abs:.3g}, {tensor.max_ulps} ulps")
    along = []  # other bytes, but the same relation to the reference: they moved with it
    for backend, fingerprint in new.backend_fingerprints.items():
        before = old.backend_fingerprints.get(backend, {})
        if before.get("sha256") != fingerprint.get("sha256") or before.get("status") != fingerprint.get("status"):
            was, now = (fingerprint_line(before) if before else "none"), fingerprint_line(fingerprint)
            if was == now:
                along.append(backend)
            else:
                lines.append(f"{backend} fingerprint: {was} -> {now}")
    if along:
        lines.append(f"fingerprints that moved with the reference ({', '.join(along)}): as they were to it")
    lines += artifact_changes(old, new)
    for context in (False, True):
        lines += [f"environment: {line}"
                  for line in environment_differences(old.environment, new.environment, context=context)]
    return tuple(lines)
