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


def one_line(text: str, limit: int = 2000) -> str:
    """Control characters escaped (a crafted name cannot start a forged second line), and bounded."""
    escaped = "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)
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
