"""Stored artifacts: each backend's prepared model (ONNX file, TorchScript archive), kept beside its
golden so it can be replayed under today's runtime without re-exporting (and, for ONNX, without torch).

Layout, per config id:
  golden/artifacts/<id>.<sha12><suffix>     suffix .onnx, .pt or .pt2

Named by content, so backends that run the same export (ONNX Runtime and the reference evaluator) share
one file; the manifest says which backend ran which.

The file is named by the sha256 of its bytes and described in the golden's manifest (`artifacts`), with
the exporter, its options and versions, and (for ONNX) its structural fingerprint. Like a tensors file,
an artifact is written before the manifest that names it and removed only once no manifest does; its
name must be exactly the one the store gives it, inside the directory, and its bytes must match the
manifest's sha256 before anyone loads them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import GoldenError
from harness.store.files import ARTIFACTS_DIR

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "torch-export": ".pt2"}
MAX_ARTIFACT_BYTES = 256 * 1024**2  # what one stored artifact may declare (the default suite's largest is < 1 MiB)


@dataclass(frozen=True, kw_only=True)
class ArtifactEntry:
    """What a manifest says about one backend's stored artifact."""

    backend: str
    file: str
    kind: str
    sha256: str
    size: int
    producer: dict[str, Any] = field(default_factory=dict)  # exporter, options, versions
    structure: dict[str, Any] | None = None  # the ONNX structural fingerprint (judging.structure)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"file": self.file, "kind": self.kind, "sha256": self.sha256, "bytes": self.size,
                                    "producer": self.producer}
        if self.structure is not None:
            document["structure"] = self.structure
        return document

    @classmethod
    def from_dict(cls, backend: str, data: dict[str, Any]) -> ArtifactEntry:
        """From a manifest already validated against its schema."""
        return cls(backend=backend, file=data["file"], kind=data["kind"], sha256=data["sha256"], size=data["bytes"],
                   producer=data.get("producer", {}), structure=data.get("structure"))


def artifact_file_name(config_id: str, kind: str, sha256: str) -> str:
    return f"{config_id}.{sha256[:12]}{SUFFIXES[kind]}"


def artifact_entry(config_id: str, backend: str, kind: str, data: bytes, producer: dict[str, Any],
                   structure: dict[str, Any] | None) -> ArtifactEntry:
    sha256 = hashlib.sha256(data).hexdigest()
    return ArtifactEntry(backend=backend, file=artifact_file_name(config_id, kind, sha256), kind=kind,
                         sha256=sha256, size=len(data), producer=producer, structure=structure)


def read_artifact(root: Path, manifest_path: Path, config_id: str, entry: ArtifactEntry) -> bytes:
    """The artifact's bytes, only from the store's own name for it inside the directory, and only when they
    match the manifest's size and sha256; GoldenError naming the file otherwise."""
    expected = artifact_file_name(config_id, entry.kind, entry.sha256)
    if entry.file != expected:
        raise GoldenError(f"{manifest_path}: artifact file {entry.file!r} of {entry.backend} is not this golden's "
                          f"(expected {expected} inside {root / ARTIFACTS_DIR})")
    path = root / ARTIFACTS_DIR / entry.file
    if path.is_symlink() or path.resolve().parent != (root / ARTIFACTS_DIR).resolve():
        raise GoldenError(f"{manifest_path}: artifact file {entry.file!r} leads outside {root / ARTIFACTS_DIR}")
    if entry.size > MAX_ARTIFACT_BYTES:
        raise GoldenError(f"{manifest_path}: artifact of {entry.backend} declares {entry.size} bytes: refused")
    try:
        with path.open("rb") as handle:
            data = handle.read(entry.size + 1)
    except FileNotFoundError:
        raise GoldenError(f"{path}: stored artifact of {entry.backend} is missing") from None
    except OSError as error:
        raise GoldenError(f"{path}: cannot read stored artifact: {error.strerror or error}") from None
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise GoldenError(f"{path}: stored artifact of {entry.backend} does not match the size and sha256 in "
                          f"its manifest (edited or corrupt)")
    return data
