"""The golden store: the only code that knows golden paths and formats.

Layout, per config id:
  golden/<id>.json              manifest: config, hashes, tensor shapes/dtypes/sha256, provenance
  golden/<id>.<sha12>.npz       the tensors (numpy .npz, loaded with allow_pickle=False)

The tensors file is named by the sha256 of its tensors and the manifest is replaced last, so the
manifest's rename is the commit point: a record killed at any moment leaves the old manifest
pointing at the old, untouched tensors file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.model.config import RnnConfig
from harness.model.environment import Environment
from harness.errors import ConfigError, GoldenError
from harness.model.hashing import array_sha256, arrays_sha256

SCHEMA = "harness.golden/1"
BACKEND_SEPARATOR = "/"


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

    def all_arrays(self) -> dict[str, np.ndarray]:
        """Everything the tensors file holds: reference tensors, then '<backend>/<tensor>' entries."""
        arrays = dict(self.tensors)
        for backend, tensors in self.backend_tensors.items():
            arrays.update({f"{backend}{BACKEND_SEPARATOR}{name}": array for name, array in tensors.items()})
        return arrays

    def manifest(self, tensors_file: str) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "config_id": self.config.id,
            "config_hash": self.config.content_hash,
            "config": self.config.to_dict(),
            "tensors_file": tensors_file,
            "tensors": tensor_entries(self.tensors),
            "weights_sha256": self.weights_sha256,
            "inputs_sha256": self.inputs_sha256,
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at,
            "environment": self.environment.to_dict(),
            "backend_fingerprints": self.backend_fingerprints,
        }


def default_golden_dir() -> Path:
    """The repository's golden/ when running from a checkout, else ./golden."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists() and (checkout / "golden").is_dir():
        return checkout / "golden"
    return Path("golden")


class GoldenStore:
    """Reads and atomically writes goldens under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def manifest_path(self, config_id: str) -> Path:
        return self.root / f"{config_id}.json"

    def exists(self, config_id: str) -> bool:
        return self.manifest_path(config_id).exists()

    def stored_ids(self) -> list[str]:
        """Config ids with a suite golden here (user goldens of the rnn_golden fixture excluded)."""
        return sorted(path.stem for path in self.root.glob("*.json") if _schema_of(path) == SCHEMA)

    def load(self, config_id: str) -> Golden:
        """The verified golden of config_id; GoldenError naming the file if missing or corrupt."""
        manifest_path = self.manifest_path(config_id)
        manifest = self._read_manifest(manifest_path)
        tensors_path = self.root / str(manifest["tensors_file"])
        arrays = read_tensors(tensors_path)
        tensors = {name: array for name, array in arrays.items() if BACKEND_SEPARATOR not in name}
        verify_tensors(tensors_path, tensors, manifest["tensors"])
        fingerprints = manifest.get("backend_fingerprints", {})
        backend_tensors = _backend_tensors(tensors_path, arrays, fingerprints)
        try:
            config = RnnConfig.from_dict(manifest["config"])
        except ConfigError as error:
            raise GoldenError(f"{manifest_path}: bad config in manifest: {error.message}") from None
        return Golden(
            config=config,
            tensors=tensors,
            weights_sha256=manifest["weights_sha256"],
            inputs_sha256=manifest["inputs_sha256"],
            recorded_by=manifest["recorded_by"],
            recorded_at=manifest["recorded_at"],
            environment=Environment.from_dict(manifest["environment"]),
            backend_fingerprints=fingerprints,
            backend_tensors=backend_tensors,
        )

    def write(self, golden: Golden, *, force: bool = False) -> Path:
        """Write atomically; refuse to replace an existing golden unless force."""
        manifest_path = self.manifest_path(golden.config.id)
        if manifest_path.exists() and not force:
            raise GoldenError(f"{manifest_path}: golden exists; pass --force to overwrite it")
        return write_golden_files(self.root, golden.config.id, golden.all_arrays(), golden.manifest)

    def _read_manifest(self, path: Path) -> dict[str, Any]:
        if not path.exists():
            raise GoldenError(
                f"{path}: no golden for this config; record one with `harness record --config {path.stem}`"
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise GoldenError(f"{path}: corrupt golden manifest: {error}") from None
        required = ("schema", "config", "tensors_file", "tensors", "weights_sha256", "inputs_sha256",
                    "recorded_by", "recorded_at", "environment")
        if not isinstance(manifest, dict) or any(key not in manifest for key in required):
            raise GoldenError(f"{path}: corrupt golden manifest: missing keys (needs {', '.join(required)})")
        if manifest["schema"] != SCHEMA:
            raise GoldenError(f"{path}: unknown golden schema {manifest['schema']!r}; this harness reads {SCHEMA}")
        return manifest


def tensor_entries(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The manifest's description of each tensor: shape, dtype and sha256 of its bytes."""
    return {name: {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": array_sha256(array)}
            for name, array in arrays.items()}


def write_golden_files(
    root: Path, name: str, arrays: dict[str, np.ndarray], manifest_for: Callable[[str], dict[str, Any]]
) -> Path:
    """Tensors under a content-addressed name, then the manifest (the commit point), then the old
    tensors file goes. A write killed at any moment leaves the old manifest and tensors intact."""
    manifest_path = root / f"{name}.json"
    old_tensors_file = _old_tensors_file(manifest_path)
    tensors_file = f"{name}.{arrays_sha256(arrays)[:12]}.npz"
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(root / tensors_file, npz_bytes(arrays))
    atomic_write(manifest_path, (json.dumps(manifest_for(tensors_file), indent=2) + "\n").encode())
    if old_tensors_file and old_tensors_file != tensors_file:
        (root / old_tensors_file).unlink(missing_ok=True)
    return manifest_path


def _old_tensors_file(manifest_path: Path) -> str | None:
    try:
        return str(json.loads(manifest_path.read_text(encoding="utf-8"))["tensors_file"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _schema_of(path: Path) -> str | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return SCHEMA  # unreadable: still looks like a golden, and loading it says what is wrong
    return document.get("schema") if isinstance(document, dict) else None


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """Load every array of an .npz without unpickling anything."""
    try:
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise GoldenError(f"{path}: golden tensors file is missing") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise GoldenError(f"{path}: corrupt golden tensors file: {error}") from None


def verify_tensors(path: Path, tensors: dict[str, np.ndarray], expected: dict[str, Any]) -> None:
    if set(tensors) != set(expected):
        raise GoldenError(f"{path}: holds tensors {sorted(tensors)}, manifest lists {sorted(expected)}")
    for name, array in tensors.items():
        if array_sha256(array) != expected[name]["sha256"] or list(array.shape) != expected[name]["shape"]:
            raise GoldenError(f"{path}: tensor {name!r} does not match the sha256 in its manifest (edited or corrupt)")


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


def npz_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **tensors)  # type: ignore[arg-type]  # numpy's stub types allow_pickle as a kwarg
    return buffer.getvalue()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over path."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, 0o644)  # mkstemp makes 0600; goldens are shared data
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
