"""Golden files on disk: atomic writes, content-addressed tensor files, reading .npz without pickle.

Shared by the suite's goldens and the rnn_golden fixture's goldens; the only code that touches their bytes.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import GoldenError
from harness.model.hashing import array_sha256, arrays_sha256

# <name>.<first 12 hex digits of the tensors' sha256>.npz, next to <name>.json; names never hold a separator.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]*"
TENSORS_FILE = re.compile(rf"(?P<name>{NAME_PATTERN})\.(?P<digest>[0-9a-f]{{12}})\.npz")


def confined_tensors_path(root: Path, manifest_path: Path, tensors_file: object) -> Path:
    """The tensors file a manifest names, only if it is the store's own kind of name for this golden
    and resolves inside the directory (no absolute path, no '..', no separator, no symlink out)."""
    name = manifest_path.stem
    match = TENSORS_FILE.fullmatch(tensors_file) if isinstance(tensors_file, str) else None
    if match is None or match["name"] != name:
        raise GoldenError(f"{manifest_path}: tensors_file {tensors_file!r} is not a tensors file of this golden "
                          f"(expected {name}.<12 hex digits>.npz inside {root})")
    path = root / str(tensors_file)
    if path.is_symlink() or path.resolve().parent != root.resolve():
        raise GoldenError(f"{manifest_path}: tensors_file {tensors_file!r} leads outside {root}")
    return path


def store_named_tensors_files(root: Path, name: str) -> list[Path]:
    """Tensors files of golden `name` by the store's naming, inside root (symlinks excluded)."""
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir()
                  if (match := TENSORS_FILE.fullmatch(path.name)) and match["name"] == name and not path.is_symlink())


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
    tensors_file = f"{name}.{arrays_sha256(arrays)[:12]}.npz"
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(root / tensors_file, npz_bytes(arrays))
    atomic_write(manifest_path, (json.dumps(manifest_for(tensors_file), indent=2) + "\n").encode())
    # Only now is the old golden unreferenced: remove every other tensors file of this name, by the
    # store's own naming (never a path read from the old manifest).
    for old in store_named_tensors_files(root, name):
        if old.name != tensors_file:
            old.unlink(missing_ok=True)
    return manifest_path


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
