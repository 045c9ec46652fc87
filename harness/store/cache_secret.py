"""The secret that binds export-cache entries to this machine, or to a key shared on purpose.

Where it comes from, first found:
- $HARNESS_CACHE_KEY: the key itself (at least 32 characters). This is how a cache is shared deliberately,
  e.g. a CI secret given to every job that restores the cache: entries written under another key fail
  their check and are rebuilt.
- Else the file `cache-key` in the user's configuration directory (platformdirs.user_config_dir("harness"):
  ~/.config/harness/cache-key on Linux), 64 random hex digits, created on first use atomically with mode
  0600. Whether or not $HARNESS_CACHE_DIR moves the cache, the key stays there.

The key is never inside the cache directory: whoever can write the cache (a CI cache restored from another
branch, another user of a shared directory) must not be able to read or replace it. A key file inside the
cache directory, one that is not a regular file, or one that others may read or write is refused, and the
cache is off for the run (the run says why).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from pathlib import Path

from harness.errors import GoldenError

KEY_ENV = "HARNESS_CACHE_KEY"
KEY_FILE = "cache-key"
MIN_KEY_CHARS = 32
MAX_KEY_BYTES = 4096


def key_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("harness", appauthor=False)) / KEY_FILE


def cache_secret(cache_root: Path) -> bytes:
    """The HMAC key of the cache at cache_root: $HARNESS_CACHE_KEY, else this user's key file (created on
    first use); GoldenError saying why there is none usable."""
    shared = os.environ.get(KEY_ENV)
    if shared is not None:
        if len(shared.strip()) < MIN_KEY_CHARS:
            raise GoldenError(f"${KEY_ENV} holds {len(shared.strip())} characters; a cache key needs at least "
                              f"{MIN_KEY_CHARS} (e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
        return shared.strip().encode()
    path = key_file()
    if path.resolve().is_relative_to(cache_root.resolve()):
        raise GoldenError(f"the cache key {path} would be inside the export cache {cache_root}, where whoever "
                          f"writes the cache could read it; choose another cache directory or set ${KEY_ENV}")
    try:
        if not path.exists():
            _create_key_file(path)
        return _read_key_file(path)
    except OSError as error:
        raise GoldenError(f"cannot read or create the cache key {path}: {error.strerror or error}") from None


def _create_key_file(path: Path) -> None:
    """A new key, written to a private temporary file and linked into place: never half a key, and a key
    another process created first is kept (link refuses to replace it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_hex(32).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    with path.open("rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise GoldenError(f"the cache key {path} is not a regular file")
        if os.name == "posix" and (status.st_mode & 0o077 or status.st_uid != os.getuid()):
            raise GoldenError(f"the cache key {path} may be read or written by others (mode "
                              f"{stat.S_IMODE(status.st_mode):04o}, owner {status.st_uid}); chmod 600 it, or "
                              "remove it to make a new one")
        key = handle.read(MAX_KEY_BYTES).strip()
    if len(key) < MIN_KEY_CHARS:
        raise GoldenError(f"the cache key {path} holds {len(key)} characters, fewer than {MIN_KEY_CHARS}; remove it "
                          "to make a new one")
    return key
