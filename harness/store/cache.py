"""The export cache: fresh exports kept in the user's cache directory, so a run does not pay for every
export again. Not data with provenance (the goldens are): an entry that fails its check is discarded
and rebuilt, and the run says so.

Layout: <cache dir>/<key[:2]>/<key>.json (kind, sha256, size, producer, upstream notes) beside
<key><suffix> (the artifact's bytes). The key is the sha256 of everything that decides the export
(harness.session.artifacts.cache_key). Writes are atomic; two processes exporting the same key write
the same bytes, so no lock is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import ARTIFACT_SUFFIXES as SUFFIXES
from harness.backends.base import Artifact
from harness.errors import GoldenError
from harness.store.documents import read_json
from harness.store.files import atomic_write

CACHE_ENV = "HARNESS_CACHE_DIR"
ENTRY_SCHEMA = "harness.export-cache/1"
MAX_ENTRY_BYTES = 256 * 1024**2


def default_cache_dir() -> Path:
    """$HARNESS_CACHE_DIR, else the platform's user cache directory (platformdirs) + /exports."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("harness", appauthor=False)) / "exports"


@dataclass(frozen=True, kw_only=True)
class CachedExport:
    """An entry read back: the artifact and the upstream warnings its export raised."""

    artifact: Artifact
    notes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Lookup:
    """What a lookup found: an entry, or nothing, and why an entry was discarded ("" when none was)."""

    entry: CachedExport | None
    discarded: str = ""


class ExportCache:
    """Export artifacts by key under one directory; every entry is checked by sha256 when loaded."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def unusable(self) -> str:
        """Why entries cannot be written here ("" when they can): the directory cannot be created, or is
        not a writable directory."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"cannot create {self.root}: {error.strerror or error}"
        if not os.access(self.root, os.W_OK | os.X_OK):
            return f"{self.root} is not writable"
        return ""

    def get(self, key: str) -> Lookup:
        meta_path = self._meta_path(key)
        if not meta_path.exists():
            return Lookup(entry=None)
        try:
            return Lookup(entry=self._read(key, meta_path))
        except (GoldenError, OSError, KeyError, TypeError, ValueError) as error:
            self.discard(key)
            return Lookup(entry=None, discarded=str(getattr(error, "message", error)))

    def put(self, key: str, artifact: Artifact, notes: tuple[str, ...]) -> str:
        """Store an export; returns "" or, when the cache cannot be written, why (the run goes on)."""
        meta = {"schema": ENTRY_SCHEMA, "kind": artifact.kind, "sha256": artifact.sha256,
                "bytes": len(artifact.data), "producer": artifact.producer, "notes": list(notes)}
        try:
            self._meta_path(key).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self._data_path(key, artifact.kind), artifact.data)
            atomic_write(self._meta_path(key), (json.dumps(meta, indent=1) + "\n").encode())
        except OSError as error:
            return f"cannot write the export cache {self.root}: {error.strerror or error}"
        return ""

    def discard(self, key: str) -> None:
        for path in self._meta_path(key).parent.glob(f"{key}.*"):
            path.unlink(missing_ok=True)

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        entries = len(list(self.root.glob("*/*.json"))) if self.root.is_dir() else 0
        if self.root.is_dir():
            shutil.rmtree(self.root)
        return entries

    def _read(self, key: str, meta_path: Path) -> CachedExport:
        meta: Any = read_json(meta_path, what="export cache entry", error=GoldenError)
        if not isinstance(meta, dict) or meta.get("schema") != ENTRY_SCHEMA or meta.get("kind") not in SUFFIXES:
            raise ValueError(f"{meta_path}: not an export cache entry")
        size = int(meta["bytes"])
        if not 0 <= size <= MAX_ENTRY_BYTES:
            raise ValueError(f"{meta_path}: declares {size} bytes")
        with self._data_path(key, meta["kind"]).open("rb") as handle:
            data = handle.read(size + 1)
        if len(data) != size or hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ValueError(f"{self._data_path(key, meta['kind'])}: does not match its sha256 (corrupt)")
        notes = tuple(str(note) for note in meta.get("notes", []))
        return CachedExport(artifact=Artifact(kind=meta["kind"], data=data, producer=dict(meta["producer"])),
                            notes=notes)

    def _meta_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def _data_path(self, key: str, kind: str) -> Path:
        return self.root / key[:2] / f"{key}{SUFFIXES[kind]}"
