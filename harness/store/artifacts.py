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
manifest's sha256 before anyone loads them. Then the artifact gate of its kind (store.gates) checks what
the bytes may do, and for ONNX the structure recomputed from them must be the manifest's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import GoldenError
from harness.store.files import ARTIFACTS_DIR
from harness.store.gates import ArtifactFacts, verify_artifact
from harness.store.gates.onnx_structure import OnnxStructure
from harness.store.paths import file_stem

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
    def from_dict(cls, backend: str, data: dict[str, Any], where: str = "golden manifest") -> ArtifactEntry:
        """From a manifest already validated against its schema; a `structure` the schema lets through but
        that is no fingerprint is a GoldenError naming `where`, never a crash later."""
        structure = data.get("structure")
        if structure is not None:
            try:
                OnnxStructure.from_dict(structure)
            except ValueError as error:
                raise GoldenError(f"{where}: artifact of {backend}: malformed {error}") from None
        return cls(backend=backend, file=data["file"], kind=data["kind"], sha256=data["sha256"], size=data["bytes"],
                   producer=data.get("producer", {}), structure=structure)


def artifact_file_name(config_id: str, kind: str, sha256: str) -> str:
    return f"{file_stem(config_id)}.{sha256[:12]}{SUFFIXES[kind]}"


def artifact_entry(config_id: str, backend: str, kind: str, data: bytes, producer: dict[str, Any],
                   structure: dict[str, Any] | None) -> ArtifactEntry:
    sha256 = hashlib.sha256(data).hexdigest()
    return ArtifactEntry(backend=backend, file=artifact_file_name(config_id, kind, sha256), kind=kind,
                         sha256=sha256, size=len(data), producer=producer, structure=structure)


@dataclass(frozen=True, kw_only=True)
class VerifiedArtifact:
    """A stored artifact's bytes, and what its gate found in them (whether running it needs a bound)."""

    data: bytes
    facts: ArtifactFacts


def read_artifact(root: Path, manifest_path: Path, config_id: str, entry: ArtifactEntry, *,
                  built_in_rnn: bool = False) -> bytes:
    """The artifact's bytes once `verified_artifact` has checked them."""
    return verified_artifact(root, manifest_path, config_id, entry, built_in_rnn=built_in_rnn).data


def verified_artifact(root: Path, manifest_path: Path, config_id: str, entry: ArtifactEntry, *,
                      built_in_rnn: bool) -> VerifiedArtifact:
    """The artifact's bytes, only from the store's own name for it inside the directory, only when they
    match the manifest's size and sha256, pass the gate of their kind (with `built_in_rnn`, a config whose
    `model` is empty: they must hold a recurrence) and, for ONNX, have the manifest's structure; GoldenError
    naming the file otherwise."""
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
    facts = _gate(entry.kind, entry.sha256, data, where=str(path), built_in_rnn=built_in_rnn)
    if entry.kind == "onnx":
        _check_structure(manifest_path, entry, facts)
    return VerifiedArtifact(data=data, facts=facts)


_GATED: dict[tuple[str, str, bool], ArtifactFacts] = {}  # (kind, sha256, built_in_rnn) -> what the gate found
_GATED_MAX = 4096


def _gate(kind: str, sha256: str, data: bytes, *, where: str, built_in_rnn: bool) -> ArtifactFacts:
    """verify_artifact, once per content in a process: backends that run the same export (ONNX Runtime and
    the reference evaluator) share one file, and the bytes were just checked against this sha256."""
    key = (kind, sha256, built_in_rnn)
    if key not in _GATED:
        if len(_GATED) >= _GATED_MAX:
            _GATED.clear()
        _GATED[key] = verify_artifact(kind, data, where=where, built_in_rnn=built_in_rnn)
    return _GATED[key]


def _check_structure(manifest_path: Path, entry: ArtifactEntry, facts: ArtifactFacts) -> None:
    """The manifest's structure must be the one recomputed from the bytes: else the golden is corrupt."""
    if entry.structure is None:
        raise GoldenError(f"{manifest_path}: ONNX artifact of {entry.backend} has no structure in its manifest")
    try:
        recorded = OnnxStructure.from_dict(entry.structure).to_dict()
    except ValueError as error:
        raise GoldenError(f"{manifest_path}: artifact of {entry.backend}: malformed {error}") from None
    actual = facts.structure or {}
    differing = [key for key in recorded if recorded[key] != actual.get(key)]
    if differing:
        raise GoldenError(f"{manifest_path}: the structure its manifest records for the {entry.backend} artifact "
                          f"is not the stored bytes' ({', '.join(differing)} differ): the golden is corrupt")
