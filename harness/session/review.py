"""`harness review`: the golden directory at a base (a git ref, read without a checkout, or a second
directory) against the working tree's, as a judging.review.Review.

Everything is read through the store (manifests, tensors, artifact bytes checked against their sha256)
and every artifact only passes the store's gate, which parses it: nothing imports a user's module, builds
a model or runs an artifact. A golden whose files are byte-identical on both sides is not loaded at all.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import GoldenError
from harness.judging.review import FileChange, GoldenSide, Review, artifact_side, golden_change, is_empty
from harness.session.git_tree import locate, read_tree, resolve_base
from harness.store.artifacts import ArtifactEntry, read_artifact
from harness.store.documents import read_json, read_json_document
from harness.store.files import ARTIFACTS_DIR, LOCK_FILE
from harness.store.golden import MANIFEST_SCHEMA, GoldenStore

SYMLINK, SPECIAL = "symlink", "special"  # entries of a file listing that are not read


@dataclass(frozen=True, kw_only=True)
class Side:
    """One side of a review: its goldens, every file under it (relative path -> sha256, or SYMLINK/SPECIAL),
    and the label that replaces its root in messages (a temporary directory means nothing to a reader)."""

    store: GoldenStore
    files: dict[str, str]
    label: str

    def relabel(self, message: str) -> str:
        return message.replace(str(self.store.root), self.label)

    def named_files(self, config_id: str) -> set[str]:
        """The files golden config_id's manifest names (itself included), as paths relative to the root;
        the manifest alone when it cannot be read."""
        manifest = f"{config_id}.json"
        try:
            document = read_json(self.store.manifest_path(config_id), what="golden manifest", error=GoldenError)
        except GoldenError:
            return {manifest}
        if not isinstance(document, dict):
            return {manifest}
        artifacts = document.get("artifacts")
        named = [entry.get("file") for entry in artifacts.values() if isinstance(entry, dict)] if isinstance(
            artifacts, dict) else []
        return {manifest, str(document.get("tensors_file")), *(f"{ARTIFACTS_DIR}/{name}" for name in named)}


def review_goldens(golden_dir: Path, base: str | None) -> Review:
    """The review of golden_dir (the working tree's) against base: a directory when base names one, else a
    git ref (None: the merge-base with the upstream, or HEAD). GoldenError or GitError (exit 2) when the
    directory is missing or the ref cannot be read."""
    GoldenStore(golden_dir).require_directory()
    head = Side(store=GoldenStore(golden_dir), files=directory_files(golden_dir), label=str(golden_dir))
    if base is not None and Path(base).is_dir():
        return compare_sides(Side(store=GoldenStore(Path(base)), files=directory_files(Path(base)), label=base),
                             head, base_label=base, head_label=str(golden_dir))
    where = locate(golden_dir)
    commit, ref_label = resolve_base(where, base)
    shown = (where.prefix or ".").rstrip("/")
    with tempfile.TemporaryDirectory(prefix="harness-review-") as temporary:
        root = Path(temporary) / "golden"
        root.mkdir()
        files = read_tree(where, commit, root)
        base_side = Side(store=GoldenStore(root), files=files, label=f"{shown}@{commit[:12]}")
        return compare_sides(base_side, head, base_label=f"{shown}/ at {ref_label} ({commit[:12]})",
                             head_label=f"{golden_dir} (working tree)")


def compare_sides(base: Side, head: Side, *, base_label: str, head_label: str) -> Review:
    """Every golden that differs (or does not load) and every file added, removed or changed."""
    base_ids, head_ids = set(base.store.stored_ids()), set(head.store.stored_ids())
    changes, unchanged = [], 0
    for config_id in sorted(base_ids | head_ids):
        if config_id in base_ids and config_id in head_ids and _same_bytes(config_id, base, head):
            unchanged += 1
            continue
        change = golden_change(config_id, _golden_side(base, config_id) if config_id in base_ids else None,
                               _golden_side(head, config_id) if config_id in head_ids else None)
        if is_empty(change):
            unchanged += 1
        else:
            changes.append(change)
    return Review(base=base_label, head=head_label, goldens=tuple(changes), unchanged=unchanged,
                  files=_file_changes(base, head, base_ids, head_ids))


def directory_files(root: Path) -> dict[str, str]:
    """Every entry under root by relative path: the sha256 of a regular file; SYMLINK or SPECIAL (not
    followed, not read) otherwise. The store's lock file is not a golden's and is left out."""
    entries = {}
    for directory, subdirectories, names in os.walk(root, followlinks=False):
        here = Path(directory)
        for name in [*names, *(sub for sub in subdirectories if (here / sub).is_symlink())]:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if relative == LOCK_FILE:
                continue
            entries[relative] = (SYMLINK if path.is_symlink() else SPECIAL if not path.is_file()
                                 else _file_sha256(path))
    return entries


def _same_bytes(config_id: str, base: Side, head: Side) -> bool:
    named = base.named_files(config_id)
    return named == head.named_files(config_id) and all(
        name in base.files and base.files.get(name) == head.files.get(name) not in (SYMLINK, SPECIAL)
        for name in named)


def _golden_side(side: Side, config_id: str) -> GoldenSide:
    """The golden as its store loads it, or why it does not; its artifacts either way."""
    store = side.store
    entries: dict[str, ArtifactEntry] | None
    try:
        golden = store.load(config_id)
        problem, entries = "", golden.artifacts
    except GoldenError as error:
        golden, problem, entries = None, side.relabel(error.message), _manifest_artifacts(store, config_id)
    if entries is None:
        return GoldenSide(golden=None, problem=problem, artifacts=None)
    artifacts = {}
    for backend, entry in entries.items():
        try:
            data, why = read_artifact(store.root, store.manifest_path(config_id), config_id, entry), ""
        except GoldenError as error:
            data, why = None, side.relabel(error.message)
        artifacts[backend] = artifact_side(entry, data, why, where=f"{side.label}/{ARTIFACTS_DIR}/{entry.file}")
    return GoldenSide(golden=golden, problem=problem, artifacts=artifacts)


def _manifest_artifacts(store: GoldenStore, config_id: str) -> dict[str, ArtifactEntry] | None:
    """The artifacts a manifest that passes its schema describes, for a golden that does not load
    otherwise (its artifacts are still worth showing); None when the manifest itself is broken."""
    try:
        manifest = read_json_document(store.manifest_path(config_id), what="golden manifest",
                                      schema=MANIFEST_SCHEMA, error=GoldenError)
    except GoldenError:
        return None
    artifacts = manifest.get("artifacts", {})
    return {backend: ArtifactEntry.from_dict(backend, entry) for backend, entry in artifacts.items()}


def _file_changes(base: Side, head: Side, base_ids: set[str], head_ids: set[str]) -> tuple[FileChange, ...]:
    named = {"base": set().union(*(base.named_files(i) for i in base_ids)),
             "head": set().union(*(head.named_files(i) for i in head_ids))}
    changes = []
    for path in sorted(base.files.keys() | head.files.keys()):
        before, after = base.files.get(path), head.files.get(path)
        if before == after:  # the same bytes (or a symlink on both sides: neither is read)
            continue
        change = "added" if before is None else "removed" if after is None else "changed"
        side = "base" if after is None else "head"
        kind = (after or before or "")
        changes.append(FileChange(path=path, change=change, unnamed=path not in named[side],
                                  kind=kind if kind in (SYMLINK, SPECIAL) else "file"))
    return tuple(changes)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
