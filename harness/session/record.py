"""Recording goldens: the reference outputs plus every backend's own fingerprint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.backends import REFERENCE_BACKEND, get_backend
from harness.backends.base import Backend
from harness.backends.capture import first_line
from harness.model.case import Case, build_case
from harness.judging.compare import TensorStatus, compare_outputs
from harness.model.config import RnnConfig
from harness.session.engine import DEFAULT_THREADS, environment_now, execute, pinned_threads, resolve_backends
from harness.model.environment import environment_differences, utc_now
from harness.errors import GoldenError
from harness.store.golden import Golden, GoldenStore
from harness.model.hashing import arrays_sha256
from harness.judging.tolerance import BITWISE

Outputs = dict[str, np.ndarray] | None


@dataclass(frozen=True, kw_only=True)
class RecordResult:
    config_id: str
    path: str
    replaced: bool
    changes: tuple[str, ...] = ()
    fingerprints: dict[str, str] = field(default_factory=dict)  # backend -> one-line status


def record_golden(
    config: RnnConfig,
    store: GoldenStore,
    *,
    force: bool,
    threads: int = DEFAULT_THREADS,
    fingerprint_backends: Sequence[str] = (),
    include_slow: bool = False,
) -> RecordResult:
    """Compute the golden of config on the reference backend (eager CPU), fingerprint every other
    available backend against it, and write it atomically."""
    previous = _previous_golden(store, config, force)
    with pinned_threads(threads):
        case = build_case(config)
        reference = execute(case, get_backend(REFERENCE_BACKEND)).first
        backends, unavailable = resolve_backends(fingerprint_backends)
        runnable = [b for b in backends if b.name not in unavailable and (include_slow or not b.is_slow(config))]
        fingerprints: dict[str, dict[str, Any]] = {}
        backend_tensors: dict[str, dict[str, np.ndarray]] = {}
        reference_sha256 = arrays_sha256(reference)
        for backend in runnable:
            fingerprints[backend.name], outputs = _fingerprint(case, backend, reference)
            if outputs is not None and fingerprints[backend.name]["sha256"] != reference_sha256:
                backend_tensors[backend.name] = outputs
        environment = environment_now(threads)
    golden = Golden(
        config=config, tensors=reference, weights_sha256=case.weights_sha256, inputs_sha256=case.inputs_sha256,
        recorded_by=REFERENCE_BACKEND, recorded_at=utc_now(), environment=environment,
        backend_fingerprints=fingerprints, backend_tensors=backend_tensors,
    )
    path = store.write(golden, force=force)
    changes = describe_changes(previous, golden) if previous else ()
    summary = {name: _fingerprint_line(fingerprint) for name, fingerprint in fingerprints.items()}
    return RecordResult(config_id=config.id, path=str(path), replaced=previous is not None, changes=changes,
                        fingerprints=summary)


def _fingerprint(case: Case, backend: Backend, reference: dict[str, np.ndarray]) -> tuple[dict[str, Any], Outputs]:
    """A backend's own fingerprint: sha256 of its outputs and its distance to the reference."""
    try:
        outputs = execute(case, backend).first
    except Exception as error:  # recorded as a fact about the backend, like a run would report it
        status = "unsupported" if backend.known_limitation(case.config) else "error"
        return {"status": status, "reason": first_line(error)}, None
    comparisons = compare_outputs(reference, outputs, BITWISE)
    if any(c.layout_problem for c in comparisons):
        return {"status": "error", "reason": "outputs differ in shape from the reference"}, None
    return {
        "status": "ok",
        "sha256": arrays_sha256(outputs),
        "max_ulps_to_reference": max(c.max_ulps for c in comparisons),
        "max_abs_to_reference": max(c.max_abs for c in comparisons),
    }, outputs


def _fingerprint_line(fingerprint: dict[str, Any]) -> str:
    if fingerprint["status"] != "ok":
        return f"{fingerprint['status']}: {fingerprint['reason']}"
    if fingerprint["max_ulps_to_reference"] == 0:
        return "bitwise equal to the reference"
    return (f"{fingerprint['max_ulps_to_reference']} ulps (max abs {fingerprint['max_abs_to_reference']:.1e}) "
            "from the reference")


def _previous_golden(store: GoldenStore, config: RnnConfig, force: bool) -> Golden | None:
    if not store.exists(config.id):
        return None
    if not force:
        raise GoldenError(f"{store.manifest_path(config.id)}: golden exists; pass --force to overwrite it")
    try:
        return store.load(config.id)
    except GoldenError:
        return None  # a corrupt golden is being replaced: nothing to diff against


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
    for backend, fingerprint in new.backend_fingerprints.items():
        before = old.backend_fingerprints.get(backend, {})
        if before.get("sha256") != fingerprint.get("sha256") or before.get("status") != fingerprint.get("status"):
            lines.append(f"{backend} fingerprint: {_fingerprint_line(before) if before else 'none'} -> "
                         f"{_fingerprint_line(fingerprint)}")
    lines += [f"environment: {line}" for line in environment_differences(old.environment, new.environment)]
    return tuple(lines)
