"""The export cache: fresh exports kept in the user's cache directory, so a run does not pay for every
export again. Not data with provenance (the goldens are): an entry that fails its check is discarded
and rebuilt, and the run says so.

Layout: <cache dir>/<key[:2]>/<key>.json (kind, sha256, size, producer, upstream notes, hmac) beside
<key><suffix> (the artifact's bytes). The key is the sha256 of everything that decides the export
(harness.session.artifacts.cache_key), so anyone can compute it: an entry is trusted only when its
`hmac` (HMAC-SHA256 over the key and every other field, the data's sha256 included) was made with this
machine's secret (store.cache_secret: $HARNESS_CACHE_KEY, else a 0600 file in the user's configuration
directory, never in the cache). An entry from another machine or key, or forged, fails the check and is
rebuilt. Read entries also pass the artifact gate (store.gates.verify_artifact) like stored artifacts.

Nothing is written, read or deleted through a symlink under the cache directory: a `<key[:2]>` that is
a symlink or a file is removed and made a real directory, a directory where an entry's file belongs is
removed, and clear() removes only the cache's own `<key[:2]>` directories. Writes are atomic; two
processes exporting the same key write the same bytes, so no lock is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import ARTIFACT_SUFFIXES as SUFFIXES
from harness.backends.base import Artifact
from harness.errors import GoldenError
from harness.store.cache_secret import KEY_ENV as CACHE_KEY_ENV
from harness.store.cache_secret import cache_secret
from harness.store.documents import read_json
from harness.store.files import atomic_write
from harness.store.gates import ArtifactFacts, verify_artifact
from harness.store.paths import entry_kind

CACHE_ENV = "HARNESS_CACHE_DIR"
ENTRY_SCHEMA = "harness.export-cache/2"  # /2: sealed with an HMAC; /1 entries are rebuilt
KEY = re.compile(r"[0-9a-f]{64}")
DIRECTORY = re.compile(r"[0-9a-f]{2}")
MAX_ENTRY_BYTES = 256 * 1024**2


def default_cache_dir() -> Path:
    """$HARNESS_CACHE_DIR, else the platform's user cache directory (platformdirs) + /exports."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("harness", appauthor=False)) / "exports"


@dataclass(frozen=True, kw_only=True)
class CachedExport:
    """An entry read back: the artifact, the upstream warnings its export raised, and what the artifact gate
    found in it (whether running it needs a bound, as for a stored artifact)."""

    artifact: Artifact
    notes: tuple[str, ...]
    facts: ArtifactFacts


@dataclass(frozen=True, kw_only=True)
class Lookup:
    """What a lookup found: an entry, or nothing, and why an entry was discarded ("" when none was)."""

    entry: CachedExport | None
    discarded: str = ""


class ExportCache:
    """Export artifacts by key under one directory; every entry is checked (HMAC, sha256, gate) when loaded."""

    def __init__(self, root: Path, *, secret: bytes | None = None) -> None:
        self.root = root
        self._secret = secret

    def secret(self) -> bytes:
        """This machine's cache key (store.cache_secret); GoldenError when there is none usable."""
        if self._secret is None:
            self._secret = cache_secret(self.root)
        return self._secret

    def unusable(self) -> str:
        """Why entries cannot be written here ("" when they can): the directory cannot be created, is not a
        writable directory, or there is no usable cache key."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"cannot create {self.root}: {error.strerror or error}"
        if not os.access(self.root, os.W_OK | os.X_OK):
            return f"{self.root} is not writable"
        try:
            self.secret()
        except GoldenError as error:
            return error.message
        return ""

    def get(self, key: str, *, built_in_rnn: bool = False) -> Lookup:
        """The entry of key when it is sound, else nothing (and why an entry there was discarded).
        built_in_rnn: the artifact gate also demands recurrence, as for a built-in RNN's stored artifact."""
        directory = self._directory(key)
        try:
            kind = entry_kind(directory)
            if kind != "directory":
                if kind != "absent":
                    self.discard(key)
                    return Lookup(entry=None, discarded=f"{directory}: is a {kind}, not a directory of the cache")
                return Lookup(entry=None)
            meta_path = self._meta_path(key)
            if entry_kind(meta_path) == "absent":
                return Lookup(entry=None)
            return Lookup(entry=self._read(key, meta_path, built_in_rnn=built_in_rnn))
        except (GoldenError, OSError, KeyError, TypeError, ValueError) as error:
            self.discard(key)
            return Lookup(entry=None, discarded=str(getattr(error, "message", error)))

    def put(self, key: str, artifact: Artifact, notes: tuple[str, ...]) -> str:
        """Store an export; returns "" or, when the cache cannot be written, why (the run goes on)."""
        meta: dict[str, Any] = {"schema": ENTRY_SCHEMA, "kind": artifact.kind, "sha256": artifact.sha256,
                                "bytes": len(artifact.data), "producer": artifact.producer, "notes": list(notes)}
        try:
            meta = json.loads(json.dumps(meta))  # sealed as it will read back
            meta["hmac"] = self._seal(key, meta)
            self.root.mkdir(parents=True, exist_ok=True)
            self._real_directory(self._directory(key))
            for path in (self._data_path(key, artifact.kind), self._meta_path(key)):
                if entry_kind(path) == "directory":
                    shutil.rmtree(path)
            atomic_write(self._data_path(key, artifact.kind), artifact.data)
            atomic_write(self._meta_path(key), (json.dumps(meta, indent=1) + "\n").encode())
        except GoldenError as error:
            return f"cannot write the export cache {self.root}: {error.message}"
        except OSError as error:
            return f"cannot write the export cache {self.root}: {error.strerror or error}"
        return ""

    def discard(self, key: str) -> None:
        """Remove the entry's files (a directory in their place too); a `<key[:2]>` that is not a real
        directory is removed itself, never followed."""
        directory = self._directory(key)
        kind = entry_kind(directory)
        if kind == "absent":
            return
        if kind != "directory":
            directory.unlink(missing_ok=True)
            return
        for path in directory.iterdir():
            if path.name.startswith(f"{key}."):
                _remove(path)

    def clear(self) -> int:
        """Remove every entry (the cache's own `<key[:2]>` directories, nothing else); returns how many
        there were. The directory itself goes too when nothing else is left in it."""
        if entry_kind(self.root) not in ("directory", "symlink") or not self.root.is_dir():
            return 0
        entries = 0
        for path in sorted(self.root.iterdir()):
            if not DIRECTORY.fullmatch(path.name):
                continue
            if entry_kind(path) == "directory":
                entries += sum(1 for entry in path.glob("*.json") if entry_kind(entry) == "file")
            _remove(path)
        if entry_kind(self.root) == "directory" and not any(self.root.iterdir()):
            self.root.rmdir()
        return entries

    def _read(self, key: str, meta_path: Path, *, built_in_rnn: bool) -> CachedExport:
        if entry_kind(meta_path) != "file":
            raise ValueError(f"{meta_path}: is a {entry_kind(meta_path)}, not an export cache entry")
        meta: Any = read_json(meta_path, what="export cache entry", error=GoldenError)
        if not isinstance(meta, dict) or meta.get("schema") != ENTRY_SCHEMA or meta.get("kind") not in SUFFIXES:
            raise ValueError(f"{meta_path}: not an export cache entry of this harness")
        if not hmac.compare_digest(str(meta.get("hmac", "")), self._seal(key, meta)):
            raise ValueError(f"{meta_path}: fails its HMAC check: not written with this machine's cache key "
                             f"(another machine or ${CACHE_KEY_ENV}, or forged)")
        size = int(meta["bytes"])
        if not 0 <= size <= MAX_ENTRY_BYTES:
            raise ValueError(f"{meta_path}: declares {size} bytes")
        data_path = self._data_path(key, meta["kind"])
        if entry_kind(data_path) != "file":
            raise ValueError(f"{data_path}: is a {entry_kind(data_path)}, not the entry's data")
        with data_path.open("rb") as handle:
            data = handle.read(size + 1)
        if len(data) != size or hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ValueError(f"{data_path}: does not match its sha256 (corrupt)")
        facts = verify_artifact(meta["kind"], data, where=str(data_path), built_in_rnn=built_in_rnn)
        notes = tuple(str(note) for note in meta.get("notes", []))
        return CachedExport(artifact=Artifact(kind=meta["kind"], data=data, producer=dict(meta["producer"])),
                            notes=notes, facts=facts)

    def _seal(self, key: str, meta: dict[str, Any]) -> str:
        """HMAC-SHA256 over the key and every field but the seal itself: an entry cannot be moved to another
        key, nor any field (the data's sha256 included) changed, without this machine's secret."""
        fields = {name: value for name, value in meta.items() if name != "hmac"}
        message = json.dumps({"key": key, "entry": fields}, sort_keys=True, separators=(",", ":"))
        return hmac.new(self.secret(), message.encode(), hashlib.sha256).hexdigest()

    def _real_directory(self, directory: Path) -> None:
        """directory as a real directory: a symlink or file in its place is removed, never written through."""
        kind = entry_kind(directory)
        if kind not in ("absent", "directory"):
            directory.unlink()
        if kind != "directory":
            directory.mkdir(exist_ok=True)

    def _directory(self, key: str) -> Path:
        if not KEY.fullmatch(key):
            raise ValueError(f"export cache keys are 64 hex digits, not {key!r}")
        return self.root / key[:2]

    def _meta_path(self, key: str) -> Path:
        return self._directory(key) / f"{key}.json"

    def _data_path(self, key: str, kind: str) -> Path:
        return self._directory(key) / f"{key}{SUFFIXES[kind]}"


def _remove(path: Path) -> None:
    """Remove path without following it: a real directory with everything in it, anything else itself."""
    if entry_kind(path) == "directory":
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
