"""Golden files on disk: atomic writes under a lock, content-addressed tensor files confined to the
directory, and .npz reading that checks every member's declared shape and dtype before reading data.
Files are named after store.paths.file_stem of their golden's name, and nothing under the directory is
reached through a symlink (store.paths).

Shared by the suite's goldens and the rnn_golden fixture's goldens; the only code that touches their bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import lzma
import math
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import GoldenError
from harness.model.dtypes import numpy_dtype
from harness.model.hashing import array_sha256, arrays_sha256, bytes_sha256
from harness.store.documents import read_json
from harness.store.paths import entry_kind, file_stem, real_directory, writable_place

# <name>.<first 12 hex digits of the tensors' sha256>.npz, next to <name>.json; names never hold a separator.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]*"
NAME = re.compile(NAME_PATTERN)
TENSORS_FILE = re.compile(rf"(?P<name>{NAME_PATTERN})\.(?P<digest>[0-9a-f]{{12}})\.npz")
# artifacts/<name>.<first 12 hex digits of its sha256>.<onnx|pt|pt2> (see store.artifacts)
ARTIFACTS_DIR = "artifacts"
ARTIFACT_FILE = re.compile(rf"(?P<name>{NAME_PATTERN})\.(?P<digest>[0-9a-f]{{12}})\.(?:onnx|pt|pt2)")
TEMPORARY_FILE = re.compile(rf"\.{NAME_PATTERN}\.tmp")  # what atomic_write leaves when it is killed
LOCK_FILE = ".harness.lock"
LOCK_TIMEOUT_SECONDS = 120
MAX_TENSORS_BYTES = 1024**3  # what one tensors file may declare in all; suite goldens are bounded by their config
MAX_MEMBERS = 64
NPY_HEADER_ROOM = 64 * 1024  # an .npy header is at most this long (version 2/3 headers can grow)
# What zipfile and its decompressors raise on damaged input (a version it does not know, a bad CRC, a
# corrupt deflate or LZMA stream, an encrypted member): all of it is a corrupt tensors file.
DAMAGED_ZIP = (OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError,
               zipfile.BadZipFile, zipfile.LargeZipFile)


@dataclass(frozen=True)
class TensorSpec:
    """What a manifest declares for one tensor: checked against the file before its data is read."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * numpy_dtype(self.dtype).itemsize


class GoldenDirectory:
    """One directory of goldens, `<name>.json` manifests beside their tensors files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def manifest_path(self, name: str) -> Path:
        return self.root / f"{file_stem(name)}.json"

    def exists(self, name: str) -> bool:
        return self.manifest_path(name).exists()

    def require_directory(self) -> None:
        """GoldenError unless the golden directory exists and is a directory, and its artifacts/ (if any)
        is a real directory inside it."""
        if not self.root.exists():
            raise GoldenError(f"golden directory {self.root} does not exist (--golden-dir)")
        if not self.root.is_dir():
            raise GoldenError(f"golden directory {self.root} is not a directory (--golden-dir)")
        artifacts_directory(self.root)


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


def check_manifest_path(path: Path) -> None:
    """A manifest that is a symlink leading out of its directory is refused, like a tensors file."""
    if path.is_symlink() and path.resolve().parent != path.parent.resolve():
        raise GoldenError(f"{path}: is a symlink leading outside {path.parent}")


def artifacts_directory(root: Path, *, create: bool = False) -> Path | None:
    """root/artifacts when it is a real directory (made when asked), None when there is none; GoldenError
    when it is a symlink or not a directory: nothing is read, written or deleted through it."""
    directory = root / ARTIFACTS_DIR
    return directory if real_directory(directory, inside=root, create=create) else None


def store_named_tensors_files(root: Path, name: str) -> list[Path]:
    """Regular tensors files of golden `name` by the store's naming, inside root (symlinks excluded)."""
    if not root.is_dir():
        return []
    return _store_named(root, TENSORS_FILE, file_stem(name))


def store_named_artifact_files(root: Path, name: str) -> list[Path]:
    """Regular artifact files of golden `name` by the store's naming, inside a real root/artifacts."""
    directory = artifacts_directory(root) if root.is_dir() else None
    return _store_named(directory, ARTIFACT_FILE, file_stem(name)) if directory else []


def _store_named(directory: Path, pattern: re.Pattern[str], stem: str) -> list[Path]:
    return sorted(path for path in directory.iterdir()
                  if (match := pattern.fullmatch(path.name)) and match["name"] == stem and entry_kind(path) == "file")


def tensor_entries(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The manifest's description of each tensor: shape, dtype and the sha256 of its meaning."""
    return {name: {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": array_sha256(array)}
            for name, array in arrays.items()}


@contextlib.contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Writers to one golden directory (records, prunes, xdist workers) take turns."""
    from filelock import FileLock, Timeout

    if entry_kind(root / LOCK_FILE) not in ("absent", "file"):
        raise GoldenError(f"{root / LOCK_FILE}: the lock file is a {entry_kind(root / LOCK_FILE)}, not a file; "
                          "remove it (the store never opens a file through a link)")
    try:
        with FileLock(str(root / LOCK_FILE), timeout=LOCK_TIMEOUT_SECONDS):
            yield
    except Timeout:
        raise GoldenError(f"{root}: another harness process has held the golden directory's lock for "
                          f"{LOCK_TIMEOUT_SECONDS} s ({root / LOCK_FILE})") from None


def write_golden_files(
    root: Path, name: str, arrays: dict[str, np.ndarray], manifest_for: Callable[[str], dict[str, Any]],
    artifacts: dict[str, bytes] | None = None,
) -> tuple[Path, tuple[Path, ...]]:
    """Under the directory's lock: remove what an interrupted record left, then tensors and artifacts
    (file name under artifacts/ -> bytes) under content-addressed names, then the manifest (the commit
    point), then the old tensors and artifact files go. A write killed at any moment leaves the old
    manifest and its files intact. Nothing is written or deleted through a symlink, and nothing but
    store-named regular files is deleted. Returns the manifest's path and the leftovers removed."""
    if not NAME.fullmatch(name):
        raise GoldenError(f"golden name {name!r} must be letters, digits, '.', '_', '+' or '-' (no separator)")
    stem = file_stem(name)
    manifest_path = root / f"{stem}.json"
    tensors_file = f"{stem}.{arrays_sha256(arrays)[:12]}.npz"
    for file_name in artifacts or {}:
        if not (match := ARTIFACT_FILE.fullmatch(file_name)) or match["name"] != stem:
            raise GoldenError(f"artifact file name {file_name!r} is not one of golden {name!r}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with store_lock(root):
            artifacts_directory(root, create=bool(artifacts))  # refused before anything is written or removed
            for path, what in ((root / tensors_file, "tensors file"), (manifest_path, "manifest"),
                               *((root / ARTIFACTS_DIR / file_name, "artifact") for file_name in artifacts or {})):
                writable_place(path, what=f"golden's {what}")
            cleaned = remove_leftovers(root)
            atomic_write(root / tensors_file, npz_bytes(arrays))
            for file_name, data in (artifacts or {}).items():
                _write_content_addressed(root / ARTIFACTS_DIR / file_name, data)
            atomic_write(manifest_path, (json.dumps(manifest_for(tensors_file), indent=2) + "\n").encode())
            # Only now is the old golden unreferenced: remove every other tensors and artifact file of this
            # name, by the store's own naming (never a path read from the old manifest).
            for old in store_named_tensors_files(root, name):
                if old.name != tensors_file:
                    old.unlink(missing_ok=True)
            for old in store_named_artifact_files(root, name):
                if old.name not in (artifacts or {}):
                    old.unlink(missing_ok=True)
    except OSError as error:
        raise GoldenError(f"{root}: cannot write goldens: {error.strerror or error}") from None
    return manifest_path, cleaned


def _write_content_addressed(path: Path, data: bytes) -> None:
    """Same name, same bytes: a regular file that already holds them stays; anything else in the way (other
    bytes, a symlink) is replaced by the rename."""
    if entry_kind(path) == "file":
        with path.open("rb") as handle:
            if handle.read(len(data) + 1) == data:
                return
    atomic_write(path, data)


def leftovers(root: Path) -> tuple[Path, ...]:
    """What interrupted writes left: temporary files, and store-named tensors and artifact files that no
    readable manifest of their golden names (a golden whose manifest cannot be read keeps all its files)."""
    if not root.is_dir():
        return ()
    found = []
    referenced: dict[str, set[str] | None] = {}  # manifest name -> the files it names (each read once)
    artifacts = artifacts_directory(root)
    candidates = [*sorted(root.iterdir()), *(sorted(artifacts.iterdir()) if artifacts else [])]
    for path in candidates:
        if entry_kind(path) != "file":
            continue
        if TEMPORARY_FILE.fullmatch(path.name):
            found.append(path)
            continue
        match = TENSORS_FILE.fullmatch(path.name) if path.parent == root else ARTIFACT_FILE.fullmatch(path.name)
        if match is None:
            continue
        name = match["name"]
        if name not in referenced:
            referenced[name] = _referenced_files(root / f"{name}.json")
        named = referenced[name]
        if named is not None and path.name not in named:
            found.append(path)
    return tuple(found)


def remove_leftovers(root: Path) -> tuple[Path, ...]:
    """Delete leftovers (call with the lock held); returns what was removed."""
    removed = leftovers(root)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _referenced_files(manifest: Path) -> set[str] | None:
    """The tensors and artifact files a manifest names; empty when there is no manifest; None when it
    cannot be read."""
    if not manifest.exists():
        return set()
    try:
        document = read_json(manifest, what="golden manifest", error=GoldenError)
    except GoldenError:
        return None
    if not isinstance(document, dict) or "tensors_file" not in document:
        return None
    artifacts = document.get("artifacts")
    named = [entry.get("file") for entry in artifacts.values() if isinstance(entry, dict)] if isinstance(
        artifacts, dict) else []
    return {str(document["tensors_file"]), *(str(name) for name in named)}


def read_tensors(path: Path, spec_of: Callable[[str], TensorSpec | None]) -> dict[str, np.ndarray]:
    """Every array of an .npz, without unpickling anything and without trusting its sizes: each member's
    .npy header must declare exactly the shape and dtype that spec_of(name) gives (None: the member is
    not allowed), and its uncompressed size must fit them, before any of its data is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise GoldenError(f"{path}: {len(members)} members in a tensors file: refused")
            specs = {info.filename: _member_spec(path, info, spec_of) for info in members}
            if sum(spec.nbytes for spec in specs.values()) > MAX_TENSORS_BYTES:
                raise GoldenError(f"{path}: declares more than {MAX_TENSORS_BYTES // 1024**2} MiB of tensors: refused")
            return {info.filename.removesuffix(".npy"): _read_member(path, archive, info, specs[info.filename])
                    for info in members}
    except FileNotFoundError:
        raise GoldenError(f"{path}: golden tensors file is missing") from None
    except DAMAGED_ZIP as error:
        raise GoldenError(f"{path}: corrupt golden tensors file: {str(error) or type(error).__name__}") from None


def _member_spec(path: Path, info: zipfile.ZipInfo, spec_of: Callable[[str], TensorSpec | None]) -> TensorSpec:
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
        raise GoldenError(f"{path}: corrupt golden tensors file: member {info.filename!r} is encrypted or "
                          f"compressed with method {info.compress_type}; goldens are stored or deflated")
    name = info.filename.removesuffix(".npy")
    spec = spec_of(name) if info.filename.endswith(".npy") else None
    if spec is None:
        raise GoldenError(f"{path}: holds {info.filename!r}, which its manifest does not declare")
    if info.file_size > spec.nbytes + NPY_HEADER_ROOM:
        raise GoldenError(f"{path}: member {info.filename!r} inflates to {info.file_size} bytes, but its manifest "
                          f"declares {spec.shape} {spec.dtype} ({spec.nbytes} bytes): refused before reading")
    return spec


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, spec: TensorSpec) -> np.ndarray:
    """One member: its header checked against spec, then exactly spec.nbytes of data."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise GoldenError(f"{path}: corrupt golden tensors file: member {info.filename!r} is .npy format "
                              f"{version[0]}.{version[1]}; goldens use 1.0 or 2.0")
        reader = readers[version]
        shape, fortran_order, dtype = reader(member)
        expected_dtype = numpy_dtype(spec.dtype)
        # np.save writes ml_dtypes' bfloat16 as raw two-byte voids ('<V2'): that is how a bfloat16 golden reads back.
        dtype_matches = dtype == expected_dtype or (spec.dtype == "bfloat16" and dtype == np.dtype("V2"))
        if tuple(shape) != spec.shape or not dtype_matches or dtype.hasobject or fortran_order:
            raise GoldenError(f"{path}: member {info.filename!r} holds {tuple(shape)} {dtype.str}"
                              f"{' (Fortran order)' if fortran_order else ''}; its manifest declares "
                              f"{spec.shape} {spec.dtype} ({expected_dtype.str})")
        data = member.read(spec.nbytes + 1)
    if len(data) != spec.nbytes:
        raise GoldenError(f"{path}: member {info.filename!r} holds {len(data)} bytes of data, expected {spec.nbytes}")
    return np.frombuffer(data, dtype=expected_dtype).reshape(spec.shape).copy()


def verify_tensors(
    path: Path, tensors: dict[str, np.ndarray], expected: dict[str, Any], *, schema_version: int
) -> None:
    """Every declared tensor present and matching its sha256 (of dtype, byte order, shape and bytes since /2)."""
    if set(tensors) != set(expected):
        raise GoldenError(f"{path}: holds tensors {sorted(tensors)}, manifest lists {sorted(expected)}")
    digest = array_sha256 if schema_version >= 2 else bytes_sha256
    for name, array in tensors.items():
        if digest(array) != expected[name]["sha256"]:
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
