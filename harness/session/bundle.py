"""`harness bundle`: one config's stored ONNX artifact, rebuilt inputs and golden outputs, written for
Polygraphy and ONNX test runners (reports.bundle writes the files). Needs no torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import GoldenError, HarnessError
from harness.model.environment import package_version
from harness.model.hashing import arrays_sha256
from harness.reports.bundle import Bundle, write_bundle

if TYPE_CHECKING:
    from harness.session.core import Session


def bundle_for(session: Session, config_id: str, backend: str, out: Path) -> tuple[tuple[Path, ...], str]:
    """Write the bundle of config_id's stored `backend` artifact into out; returns the paths and the command
    that checks it. Bad input (unknown config, no golden, no ONNX artifact) is one HarnessError."""
    config = session.config(config_id)
    session.require_golden_dir()
    golden = session.golden(config)
    if golden is None:
        raise GoldenError(session.missing_reason(config.id))
    entry = golden.artifacts.get(backend)
    onnx_backends = sorted(name for name, stored in golden.artifacts.items() if stored.kind == "onnx")
    if entry is None or entry.kind != "onnx":
        held = f"{backend}'s artifact is {entry.kind}" if entry else f"it stores no artifact of {backend}"
        raise HarnessError(f"{session.store.manifest_path(config.id)}: no ONNX model to bundle: {held} "
                           f"(ONNX artifacts here: {', '.join(onnx_backends) or 'none'})")
    inputs = golden.inputs()
    if arrays_sha256(inputs) != golden.inputs_sha256:
        raise HarnessError(f"{config.id}: the inputs rebuilt here differ from those the golden was recorded with")
    model = session.store.artifact_bytes(golden, backend)
    description = {
        "config_id": config.id, "config": config.to_dict(), "backend": backend,
        "golden_manifest": str(session.store.manifest_path(config.id)), "golden_recorded_by": golden.recorded_by,
        "golden_recorded_at": golden.recorded_at, "inputs_sha256": golden.inputs_sha256,
        "weights_sha256": golden.weights_sha256, "artifact_sha256": entry.sha256, "artifact_producer": entry.producer,
        "golden_environment": golden.environment.to_dict(),
        "written_with": {name: package_version(name) for name in ("harness", "numpy", "onnx")},
    }
    tolerance = session.policy.for_cell(backend, config.dtype, config.id, calibrated=golden.calibrated_tolerance())
    bundle = Bundle(model_bytes=model, inputs=inputs, outputs=dict(golden.tensors),
                    runner_name=f"harness-golden:{golden.recorded_by}", description=description,
                    tolerance=(tolerance.atol, tolerance.rtol))
    written = write_bundle(bundle, out)
    return written, f"cd {out} && {bundle.check_command}"
