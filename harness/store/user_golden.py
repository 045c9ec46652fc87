"""Goldens of a user's own seeded module (the `rnn_golden` pytest fixture): named tensors in
`<dir>/<name>.json` + `<name>.<sha12>.npz` (a name over 100 characters: its store.paths.file_stem), with
the suite goldens' format rules (atomic writes, sha256 per tensor, no pickle, tensors files confined to
the directory)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import GoldenError
from harness.model.environment import Environment
from harness.store.documents import read_json_document
from harness.store.files import (
    GoldenDirectory,
    TensorSpec,
    check_manifest_path,
    confined_tensors_path,
    read_tensors,
    tensor_entries,
    verify_tensors,
    write_golden_files,
)
from harness.store.paths import file_stem

SCHEMA = "harness.user-golden/2"  # /2: tensor sha256 covers dtype, byte order and shape; /1 is still read
SCHEMA_FAMILY = "harness.user-golden/"
MANIFEST_SCHEMA = ("harness.store.schemas", "user-golden.schema.json")


@dataclass(frozen=True, kw_only=True)
class UserGolden:
    """A user's golden: the tensors, and what produced them (hashes only when the model was given)."""

    name: str
    tensors: dict[str, np.ndarray]
    recorded_at: str
    environment: Environment
    weights_sha256: str = ""
    inputs_sha256: str = ""

    def manifest(self, tensors_file: str) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "name": self.name, "tensors_file": tensors_file,
            "tensors": tensor_entries(self.tensors), "weights_sha256": self.weights_sha256,
            "inputs_sha256": self.inputs_sha256, "recorded_at": self.recorded_at,
            "environment": self.environment.to_dict(),
        }


class UserGoldenStore(GoldenDirectory):
    """The fixture's goldens (one per name) under one directory."""

    def write(self, golden: UserGolden) -> Path:
        return write_golden_files(self.root, golden.name, golden.tensors, golden.manifest)[0]

    def load(self, name: str) -> UserGolden:
        """The verified golden: manifest against its schema, tensors file confined to the directory,
        each member's declared shape and dtype checked before its data is read, then every sha256."""
        path = self.manifest_path(name)
        check_manifest_path(path)
        manifest = read_json_document(path, what="golden manifest", schema=MANIFEST_SCHEMA, error=GoldenError)
        tensors_path = confined_tensors_path(self.root, path, manifest["tensors_file"])
        expected = manifest["tensors"]
        specs = {key: TensorSpec(shape=tuple(entry["shape"]), dtype=entry["dtype"]) for key, entry in expected.items()}
        environment = Environment.from_dict(manifest["environment"])
        tensors = read_tensors(tensors_path, specs.get)
        verify_tensors(tensors_path, tensors, expected, schema_version=int(manifest["schema"].rsplit("/", 1)[1]))
        recorded = str(manifest["name"])  # the whole name, when the file is named after its stem
        return UserGolden(name=recorded if file_stem(recorded) == path.stem else name, tensors=tensors,
                          recorded_at=str(manifest.get("recorded_at", "?")), environment=environment,
                          weights_sha256=str(manifest.get("weights_sha256", "")),
                          inputs_sha256=str(manifest.get("inputs_sha256", "")))
