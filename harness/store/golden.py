"""The golden store: the only code that knows golden paths and formats.

Layout, per config id (<stem> is the id, or for an id over 100 characters a prefix and a digest of it:
store.paths.file_stem; the manifest always holds the whole id):
  golden/<stem>.json              manifest: config, hashes, tensor shapes/dtypes/sha256, provenance
  golden/<stem>.<sha12>.npz       the tensors (numpy .npz, loaded with allow_pickle=False)
  golden/artifacts/<stem>.<sha12>.onnx|.pt|.pt2    each backend's stored artifact (store.artifacts)

The tensors file is named by the sha256 of its tensors and the manifest is replaced last, so the
manifest's rename is the commit point: a record killed at any moment leaves the old manifest
pointing at the old, untouched tensors file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError, GoldenError
from harness.model.axes import expected_shapes
from harness.model.calibration import Calibration
from harness.model.config import RnnConfig
from harness.model.environment import Environment
from harness.model.hashing import arrays_sha256
from harness.model.inputs import build_inputs
from harness.model.tolerance import Tolerance
from harness.store.artifacts import ArtifactEntry, VerifiedArtifact, read_artifact, verified_artifact
from harness.store.documents import read_json, read_json_document
from harness.store.files import (
    GoldenDirectory,
    TensorSpec,
    artifacts_directory,
    check_manifest_path,
    confined_tensors_path,
    leftovers,
    read_tensors,
    store_lock,
    store_named_artifact_files,
    store_named_tensors_files,
    tensor_entries,
    verify_tensors,
    write_golden_files,
)
from harness.store.paths import file_stem

SCHEMA = "harness.golden/3"  # /3: each parameter's sha256; /2 (tensor sha256 over dtype, byte order and shape)
SCHEMA_WITHOUT_PARAMETERS = "harness.golden/2"  # and /1 are still read; they name no parameter
SCHEMA_FAMILY = "harness.golden/"
MANIFEST_SCHEMA = ("harness.store.schemas", "golden.schema.json")
BACKEND_SEPARATOR = "/"
STORED_INPUTS = "inputs"  # '<inputs>/<name>' members: a user's inputs (suite key `inputs`), never a backend's name
INPUT_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                "float32", "float64", "bfloat16")


@dataclass(frozen=True, kw_only=True)
class Golden:
    """Golden tensors of one config and where they came from."""

    config: RnnConfig
    tensors: dict[str, np.ndarray]
    weights_sha256: str
    inputs_sha256: str
    recorded_by: str  # the backend that produced the tensors
    recorded_at: str
    environment: Environment
    backend_fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)
    # outputs of backends that are not bitwise equal to the reference, to measure their own movement
    backend_tensors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    artifacts: dict[str, ArtifactEntry] = field(default_factory=dict)  # backend -> its stored artifact
    calibration: Calibration | None = None  # float16/bfloat16: the tolerance calibrated on the float64 oracle
    # state_dict name -> its sha256 (harness.model.case.parameters_sha256); empty for a golden before /3
    parameters_sha256: dict[str, str] = field(default_factory=dict)
    # The inputs themselves, where the suite's own function drew them (a replay cannot call it); else empty:
    # the config rebuilds them (harness.model.inputs).
    stored_inputs: dict[str, np.ndarray] = field(default_factory=dict)

    def inputs(self) -> dict[str, np.ndarray]:
        """The inputs the golden was computed from, without torch or the user's code: those it stores, else
        the config's own rebuilt (check them against inputs_sha256 before trusting them)."""
        return dict(self.stored_inputs) if self.config.inputs else build_inputs(self.config)

    def calibrated_tolerance(self) -> Tolerance | None:
        return self.calibration.tolerance() if self.calibration else None

    def all_arrays(self) -> dict[str, np.ndarray]:
        """Everything the tensors file holds: reference tensors, then '<backend>/<tensor>' entries."""
        arrays = dict(self.tensors)
        for backend, tensors in self.backend_tensors.items():
            arrays.update({f"{backend}{BACKEND_SEPARATOR}{name}": array for name, array in tensors.items()})
        prefix = f"{STORED_INPUTS}{BACKEND_SEPARATOR}"
        arrays.update({f"{prefix}{name}": array for name, array in self.stored_inputs.items()})
        return arrays

    def manifest(self, tensors_file: str) -> dict[str, Any]:
        return {
            # A golden without per-parameter hashes (rewritten from a /1 or /2 one) stays what it is.
            "schema": SCHEMA if self.parameters_sha256 else SCHEMA_WITHOUT_PARAMETERS,
            "config_id": self.config.id,
            "config_hash": self.config.content_hash,
            "config": self.config.to_dict(),
            "tensors_file": tensors_file,
            "tensors": tensor_entries(self.tensors),
            "weights_sha256": self.weights_sha256,
            **({"parameters_sha256": dict(self.parameters_sha256)} if self.parameters_sha256 else {}),
            "inputs_sha256": self.inputs_sha256,
            **({"stored_inputs": tensor_entries(self.stored_inputs)} if self.stored_inputs else {}),
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at,
            "environment": self.environment.to_dict(),
            "backend_fingerprints": self.backend_fingerprints,
            **({"artifacts": {backend: entry.to_dict() for backend, entry in self.artifacts.items()}}
               if self.artifacts else {}),
            **({"calibrated_tolerance": self.calibration.to_dict()} if self.calibration else {}),
        }


def default_golden_dir() -> Path:
    """The repository's golden/ when running from a checkout, else ./golden."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists() and (checkout / "golden").is_dir():
        return checkout / "golden"
    return Path("golden")


class GoldenStore(GoldenDirectory):
    """Reads and atomically writes suite goldens (one per config id) under one directory."""

    def stored_ids(self) -> list[str]:
        """Config ids with a suite golden here (user goldens of the rnn_golden fixture excluded): the id its
        manifest records when the file is named after it, else the file's stem (loading it says what is wrong)."""
        ids = []
        for path in self.root.glob("*.json"):
            schema, config_id = _schema_and_id(path)
            if (schema or "").startswith(SCHEMA_FAMILY):
                ids.append(config_id if config_id and file_stem(config_id) == path.stem else path.stem)
        return sorted(ids)

    def load(self, config_id: str) -> Golden:
        """The verified golden of config_id; GoldenError naming the file (and field) if missing or corrupt.

        Order: the manifest against its schema; its config; its declared tensors against what the config
        implies; the tensors file's name (confined to the directory); each member's declared shape and dtype;
        only then the data, and every tensor's sha256."""
        manifest_path = self.manifest_path(config_id)
        manifest = self._read_manifest(manifest_path)
        try:
            config = RnnConfig.from_dict(manifest["config"])
        except ConfigError as error:
            raise GoldenError(f"{manifest_path}: bad config in manifest: {error.message}") from None
        specs = _declared_specs(manifest_path, config, manifest["tensors"])
        fingerprints = manifest["backend_fingerprints"]
        tensors_path = confined_tensors_path(self.root, manifest_path, manifest["tensors_file"])
        declared_inputs = manifest.get("stored_inputs", {})
        input_specs = _stored_input_specs(manifest_path, config, declared_inputs)
        arrays = read_tensors(tensors_path, _spec_lookup(specs, fingerprints, input_specs))
        tensors = {name: array for name, array in arrays.items() if BACKEND_SEPARATOR not in name}
        verify_tensors(tensors_path, tensors, manifest["tensors"], schema_version=_version(manifest["schema"]))
        prefix = f"{STORED_INPUTS}{BACKEND_SEPARATOR}"
        stored_inputs = {name.removeprefix(prefix): array for name, array in arrays.items() if name.startswith(prefix)}
        if declared_inputs:
            verify_tensors(tensors_path, stored_inputs, declared_inputs, schema_version=2)
        backend_tensors = _backend_tensors(tensors_path, {name: array for name, array in arrays.items()
                                                          if not name.startswith(prefix)}, fingerprints)
        return Golden(
            config=config,
            tensors=tensors,
            weights_sha256=manifest["weights_sha256"],
            parameters_sha256=dict(manifest.get("parameters_sha256", {})),
            inputs_sha256=manifest["inputs_sha256"],
            recorded_by=manifest["recorded_by"],
            recorded_at=manifest["recorded_at"],
            environment=Environment.from_dict(manifest["environment"]),
            backend_fingerprints=fingerprints,
            backend_tensors=backend_tensors,
            artifacts={backend: ArtifactEntry.from_dict(backend, entry, where=str(manifest_path))
                       for backend, entry in manifest.get("artifacts", {}).items()},
            calibration=_plausible_calibration(manifest_path, config, manifest.get("calibrated_tolerance")),
            stored_inputs=stored_inputs,
        )

    def artifact_bytes(self, golden: Golden, backend: str) -> bytes:
        """The stored artifact of one backend, as verified_artifact gives it."""
        return self.verified_artifact(golden, backend).data

    def verified_artifact(self, golden: Golden, backend: str) -> VerifiedArtifact:
        """The stored artifact of one backend and what its gate found: read only from a real artifacts
        directory inside the golden directory, checked against the manifest's size and sha256, then gated
        (a built-in RNN's must hold a recurrence)."""
        artifacts_directory(self.root)
        return verified_artifact(self.root, self.manifest_path(golden.config.id), golden.config.id,
                                 golden.artifacts[backend], built_in_rnn=not golden.config.model)

    def load_for(self, config: RnnConfig) -> Golden:
        """The golden of config, which must have been recorded for exactly this config."""
        golden = self.load(config.id)
        if golden.config.content_hash != config.content_hash:
            raise GoldenError(
                f"{self.manifest_path(config.id)}: recorded for a different config than the suite's "
                f"{config.id!r} (content hash {golden.config.content_hash[:12]} vs {config.content_hash[:12]})"
            )
        return golden

    def previous(self, config_id: str, *, force: bool) -> tuple[Golden | None, str]:
        """Before a record: the golden it would replace and, when that one cannot be read, why.
        GoldenError when one exists and force is not given, or when the record could not be written here
        (an artifacts/ that is a symlink): said before anything is computed."""
        if self.root.is_dir():
            artifacts_directory(self.root)
        if not self.exists(config_id):
            return None, ""
        if not force:
            raise GoldenError(f"{self.manifest_path(config_id)}: golden exists; pass --force to overwrite it")
        try:
            return self.load(config_id), ""
        except GoldenError as error:
            return None, error.message

    def write(self, golden: Golden, *, force: bool = False, artifacts: dict[str, bytes] | None = None
              ) -> tuple[Path, tuple[Path, ...]]:
        """Write atomically under the directory's lock; refuse to replace an existing golden unless force.
        artifacts: backend -> the bytes its entry in golden.artifacts describes; an entry given none keeps
        the file already stored (checked against its sha256 first).
        Returns the manifest's path and the leftovers of interrupted writes that were removed first."""
        manifest_path = self.manifest_path(golden.config.id)
        if manifest_path.exists() and not force:
            raise GoldenError(f"{manifest_path}: golden exists; pass --force to overwrite it")
        if not set(artifacts or {}) <= set(golden.artifacts):
            raise ValueError("artifact bytes given for a backend the golden has no entry for")
        artifacts_directory(self.root)  # before reading a kept artifact through it
        files = {entry.file: (artifacts or {}).get(backend) or read_artifact(
                     self.root, manifest_path, golden.config.id, entry, built_in_rnn=not golden.config.model)
                 for backend, entry in golden.artifacts.items()}
        return write_golden_files(self.root, golden.config.id, golden.all_arrays(), golden.manifest, files)

    def leftovers(self) -> tuple[Path, ...]:
        """Temporary and orphan tensors files that interrupted writes left (the next record removes them)."""
        return leftovers(self.root)

    def files_of(self, config_id: str) -> list[Path]:
        """The manifest and the tensors files the store's own naming gives this id, inside the directory."""
        return [self.manifest_path(config_id), *store_named_tensors_files(self.root, config_id),
                *store_named_artifact_files(self.root, config_id)]

    def remove(self, config_ids: Iterable[str], *, dry_run: bool) -> tuple[Path, ...]:
        """Delete (or, dry_run, only list) every file of these goldens; returns the paths."""
        paths = tuple(path for config_id in config_ids for path in self.files_of(config_id) if path.exists())
        if not dry_run:
            with store_lock(self.root):
                for path in paths:
                    path.unlink(missing_ok=True)
        return paths

    def _read_manifest(self, path: Path) -> dict[str, Any]:
        if not path.exists():
            raise GoldenError(f"{path}: no golden for this config")
        check_manifest_path(path)
        return read_json_document(path, what="golden manifest", schema=MANIFEST_SCHEMA, error=GoldenError)


def _plausible_calibration(path: Path, config: RnnConfig, stored: dict[str, Any] | None) -> Calibration | None:
    """The manifest's calibrated tolerance, only as the harness makes them (a replay, which has no oracle to
    recompute it, relies on it): its dtype, multiplier and absolute term, and an eager error below one epsilon."""
    if stored is None:
        return None
    calibration = Calibration.from_dict(stored)
    if calibration.dtype != config.dtype or not calibration.plausible():
        raise GoldenError(f"{path}: calibrated_tolerance {calibration.derivation} is not one the harness makes for "
                          f"{config.dtype} (edited?)")
    return calibration


def _version(schema: str) -> int:
    return int(schema.rsplit("/", 1)[1])


def _declared_specs(path: Path, config: RnnConfig, declared: dict[str, Any]) -> dict[str, TensorSpec]:
    """The manifest's tensors, which must be exactly what the config implies (names, shapes, dtype). Where the
    config alone does not fix them (a user's model, gradients, training), the manifest's names and shapes
    stand, in the config's dtype; every tensors file member is still checked against them before reading."""
    implied = expected_shapes(config)
    if implied is None:
        implied = {name: tuple(entry["shape"]) for name, entry in declared.items()}
    if set(declared) != set(implied):
        raise GoldenError(f"{path}: declares tensors {sorted(declared)}; config {config.id} implies {sorted(implied)}")
    for name, entry in declared.items():
        if tuple(entry["shape"]) != implied[name] or entry["dtype"] != config.dtype:
            raise GoldenError(f"{path}: declares {name} as {tuple(entry['shape'])} {entry['dtype']}; config "
                              f"{config.id} implies {implied[name]} {config.dtype}")
    return {name: TensorSpec(shape=implied[name], dtype=config.dtype) for name in implied}


def _stored_input_specs(path: Path, config: RnnConfig, declared: dict[str, Any]) -> dict[str, TensorSpec]:
    """The manifest's stored inputs: only for a config whose inputs come from the user's function."""
    if bool(declared) != bool(config.inputs):
        held = "stores inputs" if declared else "stores no inputs"
        raise GoldenError(f"{path}: {held}, but config {config.id} "
                          f"{'draws no inputs of its own' if declared else 'draws its inputs from ' + config.inputs}")
    for name, entry in declared.items():
        if entry["dtype"] not in INPUT_DTYPES:
            raise GoldenError(f"{path}: stored input {name!r} has dtype {entry['dtype']!r}: numbers only")
    return {name: TensorSpec(shape=tuple(entry["shape"]), dtype=entry["dtype"]) for name, entry in declared.items()}


def _spec_lookup(specs: dict[str, TensorSpec], fingerprints: dict[str, Any],
                 input_specs: dict[str, TensorSpec]) -> Callable[[str], TensorSpec | None]:
    """Reference tensors as declared; '<backend>/<tensor>' only for a backend fingerprinted 'ok'; 'inputs/<name>'
    as the manifest's stored inputs declare them."""
    def spec_of(member: str) -> TensorSpec | None:
        backend, separator, name = member.rpartition(BACKEND_SEPARATOR)
        if not separator:
            return specs.get(member)
        if backend == STORED_INPUTS:
            return input_specs.get(name)
        known = fingerprints.get(backend, {}).get("status") == "ok"
        return specs.get(name) if known else None

    return spec_of


def _schema_and_id(path: Path) -> tuple[str | None, str | None]:
    """A manifest's schema and config id, read without following a symlink out of its directory."""
    try:
        check_manifest_path(path)
        document = read_json(path, what="golden manifest", error=GoldenError)
    except GoldenError:
        return SCHEMA, None  # unreadable: still looks like a golden, and loading it says what is wrong
    if not isinstance(document, dict):
        return None, None
    schema, config_id = document.get("schema"), document.get("config_id")
    return (schema if isinstance(schema, str) else None), (config_id if isinstance(config_id, str) else None)


def _backend_tensors(
    path: Path, arrays: dict[str, np.ndarray], fingerprints: dict[str, Any]
) -> dict[str, dict[str, np.ndarray]]:
    """Regroup '<backend>/<tensor>' arrays per backend and check them against their fingerprints."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        backend, separator, name = key.partition(BACKEND_SEPARATOR)
        if separator:
            grouped.setdefault(backend, {})[name] = array
    for backend, tensors in grouped.items():
        if arrays_sha256(tensors) != fingerprints.get(backend, {}).get("sha256"):
            raise GoldenError(f"{path}: outputs stored for backend {backend!r} do not match its fingerprint sha256")
    return grouped
