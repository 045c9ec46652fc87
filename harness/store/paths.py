"""Where the store's files may be: the file stem a name or config id gets, and the rule that every path the
store reads, writes or deletes under its directory is a real directory or file there.

- File stems: an id up to MAX_STEM characters is its own stem; a longer one (a suite with 300 `lengths`
  makes a 625-character id) gets its first STEM_PREFIX characters, '-h', and 32 hex digits of the
  sha256 of the whole id. Stable across processes and machines, far under the file system's 255-byte
  limit once the store adds its suffixes and atomic_write its temporary name, and a stem is its own stem.
- Confinement: a symlink under the directory is never followed (lstat on every component the store
  names); a symlink or a regular file in the way of a write is replaced by the rename, never written
  through; a directory or special file in the way is refused with one line.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from harness.errors import GoldenError

MAX_STEM = 100
STEM_PREFIX = 64
STEM_DIGEST = 32  # hex digits of sha256: 128 bits, no collision among any suite's ids


def file_stem(name: str) -> str:
    """The stem of every file named after `name` (manifest, tensors file, artifacts): `name` itself when it
    has at most MAX_STEM characters, else a readable prefix and a digest of the whole name."""
    if len(name) <= MAX_STEM:
        return name
    return f"{name[:STEM_PREFIX]}-h{hashlib.sha256(name.encode()).hexdigest()[:STEM_DIGEST]}"


def entry_kind(path: Path) -> str:
    """What is at path, without following a symlink: absent, file, directory, symlink or special."""
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there, or no directory above it to hold it
        return "absent"
    except OSError as error:  # a name too long, a directory that cannot be searched
        raise GoldenError(f"{path}: cannot be inspected: {error.strerror or error}") from None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "file" if stat.S_ISREG(mode) else "special"


def real_directory(path: Path, *, inside: Path, create: bool = False) -> bool:
    """Whether the directory path (under `inside`) exists, creating it when asked; GoldenError when a
    symlink or anything but a directory is there: the store never follows a link out of `inside`."""
    kind = entry_kind(path)
    if kind == "absent" and create:
        path.mkdir()
        return True
    if kind in ("absent", "directory"):
        return kind == "directory"
    target = f" (to {_link_target(path)})" if kind == "symlink" else ""
    raise GoldenError(f"{path}: is a {kind}{target}, not a directory; the store reads, writes and deletes only real "
                      f"directories and files inside {inside}: replace it with a directory")


def writable_place(path: Path, *, what: str) -> None:
    """GoldenError when a directory or special file stands where a file is about to be renamed into place
    (a symlink or a regular file there is replaced by the rename itself, its target never touched)."""
    kind = entry_kind(path)
    if kind in ("directory", "special"):
        raise GoldenError(f"{path}: a {kind} is in the way of the {what}; remove it and record again")


def _link_target(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return "?"
