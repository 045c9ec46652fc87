"""The one exception family for errors a user can cause; the CLI maps each to an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_BAD_INPUT = 2


class HarnessError(Exception):
    """A user-caused error: printed as one line, never as a traceback."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        message = one_line(message)
        super().__init__(message)
        self.message = message


# GitHub Actions runs a workflow command from any line of a step's output: `::name::` at the start of a line
# (after leading whitespace), and the legacy `##[name]` anywhere in it.
_COMMAND = "::"
_LEGACY_COMMAND = "##["


def printable(text: object) -> str:
    """The text as one line that cannot act on a terminal or a CI log: every control character (C0, C1, DEL,
    ESC, CR/LF, Unicode format and separator characters) escaped as Python writes it (\\x1b, \\n, \\u202e),
    so no ANSI or OSC-8 sequence and no second line; a leading `::` and any `##[` broken, so no workflow
    command. Text that is already printable comes back unchanged, so applying it twice changes nothing more.
    Every line made from a file (manifests, file names, upstream errors, error messages) passes through here."""
    value = str(text)
    if value.isprintable() and _LEGACY_COMMAND not in value and not value.lstrip(" ").startswith(_COMMAND):
        return value
    value = "".join(character if character.isprintable() else repr(character)[1:-1] for character in value)
    value = value.replace(_LEGACY_COMMAND, "##\\x5b")
    if value.lstrip(" ").startswith(_COMMAND):
        value = value.replace(":", "\\x3a", 1)
    return value


def one_line(text: str, limit: int = 2000) -> str:
    """printable(text), bounded: a crafted name cannot start a forged second line or a workflow command."""
    escaped = printable(text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


class ConfigError(HarnessError):
    """A configuration is impossible or malformed."""


class SuiteError(HarnessError):
    """A suite file is missing, not TOML, or holds a bad configuration."""


class GoldenError(HarnessError):
    """A golden file is missing, corrupt, or would be overwritten without --force."""


class BackendUnavailableError(HarnessError):
    """A backend the user asked for cannot run on this machine."""


class UnknownNameError(HarnessError):
    """A config id or backend name that does not exist."""
