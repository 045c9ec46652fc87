"""A directory of the working tree as it is at a git ref, read without a checkout: the index, the working
tree and HEAD stay untouched. Git runs with a fixed argument list (no shell), and only `ls-tree` and
`cat-file` read the objects, so no attribute (`export-ignore`, filters) can hide or rewrite a file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

MAX_TREE_BYTES = 4 * 1024**3  # a golden directory at a ref larger than this is refused (the default suite's is ~5 MB)
SYMLINK_MODE = "120000"
GIT_TIMEOUT_SECONDS = 120
GIT_ENVIRONMENT = {"GIT_TERMINAL_PROMPT": "0", "GIT_LITERAL_PATHSPECS": "1"}  # never ask; a path is a path


class GitError(HarnessError):
    """A ref that names no commit, a directory outside any git repository, or git itself missing."""


@dataclass(frozen=True, kw_only=True)
class GitDirectory:
    """Where a working-tree directory lives in its repository: the top level and its path from there."""

    top: Path
    prefix: str  # "golden/" (with a trailing slash), or "" for the top level itself


def locate(directory: Path) -> GitDirectory:
    """The repository that holds `directory` (which must exist); GitError when there is none."""
    if not _git(directory, "rev-parse", "--is-inside-work-tree", check=False).strip() == b"true":
        raise GitError(f"{directory} is not inside a git working tree (give a second golden directory as BASE)")
    top = _git(directory, "rev-parse", "--show-toplevel").decode().rstrip("\n")
    prefix = _git(directory, "rev-parse", "--show-prefix").decode().rstrip("\n")
    return GitDirectory(top=Path(top), prefix=prefix)


def resolve_base(where: GitDirectory, base: str | None) -> tuple[str, str]:
    """(commit, label) of a base: a ref as given; `REF...` for the merge-base of REF and HEAD (what a pull
    request's diff shows); none for the merge-base with the branch's upstream, or HEAD without one."""
    if base is None:
        upstream = _git(where.top, "rev-parse", "--verify", "--quiet", "@{upstream}", check=False).strip()
        if upstream:
            return _commit(where, "HEAD", upstream.decode()), "merge-base of HEAD and its upstream"
        return _commit(where, "HEAD"), "HEAD"
    if base.endswith("...") and len(base) > 3:
        return _commit(where, "HEAD", base[:-3]), f"merge-base of HEAD and {base[:-3]}"
    return _commit(where, base), base


def read_tree(where: GitDirectory, commit: str, into: Path) -> dict[str, str]:
    """Write the directory's files at `commit` under `into` (same relative paths); returns relative path ->
    sha256 of every entry, "symlink" or "special" for what is not written (symlinks, submodules)."""
    listing = _git(where.top, "ls-tree", "-r", "-z", "--full-tree", "-l", commit, "--", where.prefix or ".")
    entries, blobs = {}, []
    for record in filter(None, listing.split(b"\0")):
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, sha, size = meta.decode().split()
        path = os.fsdecode(raw_path)
        if not path.startswith(where.prefix):  # ls-tree lists only under the prefix; anything else is not ours
            continue
        relative = path[len(where.prefix):]
        if kind != "blob" or mode == SYMLINK_MODE:
            entries[relative] = "symlink" if mode == SYMLINK_MODE else "special"
            continue
        blobs.append((relative, sha, int(size)))
    if sum(size for _, _, size in blobs) > MAX_TREE_BYTES:
        raise GitError(f"{where.prefix or '.'} at {commit[:12]} holds more than {MAX_TREE_BYTES // 1024**3} GiB: "
                       f"refused")
    contents = _cat_blobs(where.top, [sha for _, sha, _ in blobs])
    root = into.resolve()
    for (relative, _, _), data in zip(blobs, contents, strict=True):
        target = (root / relative).resolve()
        if root not in target.parents:  # git stores no '..' or absolute paths; this keeps it so regardless
            raise GitError(f"{relative!r} at {commit[:12]} leads outside its directory: refused")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entries[relative] = hashlib.sha256(data).hexdigest()
    return entries


def _commit(where: GitDirectory, *refs: str) -> str:
    """The commit a ref names (one ref), or the merge-base of two; GitError naming the ref otherwise."""
    for ref in refs:
        if ref.startswith("-") or not _git(where.top, "rev-parse", "--verify", "--quiet", "--end-of-options",
                                           f"{ref}^{{commit}}", check=False).strip():
            raise GitError(f"{ref!r} names no commit in {where.top}")
    if len(refs) == 1:
        return _git(where.top, "rev-parse", "--verify", "--end-of-options", f"{refs[0]}^{{commit}}").decode().strip()
    base = _git(where.top, "merge-base", "--end-of-options", *refs, check=False).decode().strip()
    if not base:
        raise GitError(f"{refs[0]} and {refs[1]} have no common ancestor in {where.top}")
    return base


def _cat_blobs(top: Path, shas: list[str]) -> list[bytes]:
    """The contents of these blobs, read with one `git cat-file --batch`."""
    if not shas:
        return []
    output = _git(top, "cat-file", "--batch", stdin=("\n".join(shas) + "\n").encode())
    contents, position = [], 0
    for _ in shas:
        header_end = output.index(b"\n", position)
        _, kind, size = output[position:header_end].decode().split()
        if kind != "blob":
            raise GitError(f"git cat-file gave a {kind} where a blob was listed")
        start = header_end + 1
        contents.append(output[start:start + int(size)])
        position = start + int(size) + 1  # each object is followed by a newline
    return contents


def _git(cwd: Path, *arguments: str, check: bool = True, stdin: bytes | None = None) -> bytes:
    """git's stdout; GitError with git's own first line of complaint when it fails (and check)."""
    try:
        result = subprocess.run(["git", *arguments], cwd=cwd, input=stdin, capture_output=True, check=False,
                                timeout=GIT_TIMEOUT_SECONDS, env={**os.environ, **GIT_ENVIRONMENT})
    except FileNotFoundError:
        raise GitError("git is not installed (or not on PATH): a git ref cannot be read") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {arguments[0]} took longer than {GIT_TIMEOUT_SECONDS} s") from None
    if check and result.returncode != 0:
        complaint = result.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"{cwd}: git {arguments[0]} failed: {complaint[0] if complaint else result.returncode}")
    return result.stdout
