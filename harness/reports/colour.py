"""Colour for a person at a terminal: failing verdict words in red and a passing summary in green, only when
stdout is a terminal and NO_COLOR (no-color.org) is unset; plain text everywhere else (CI logs, pipes, files),
so every report reads the same without it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TextIO

from harness.verdicts import Verdict

_RED, _GREEN, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[0m"
_FAILING_WORDS = re.compile(r"\b(" + "|".join(verdict.value for verdict in Verdict if verdict.failing) + r"|FAILED)\b")
_PASSING_SUMMARY = re.compile(r"^OK(?=: )")


def colour_wanted(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when the stream is a terminal that takes colour: NO_COLOR unset (or empty) and TERM not "dumb"."""
    return stream.isatty() and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def coloured(lines: Iterable[str]) -> list[str]:
    """The lines with failing verdict words red and a passing run's "OK" green; the text itself is unchanged."""
    return [_PASSING_SUMMARY.sub(f"{_GREEN}OK{_RESET}", _FAILING_WORDS.sub(rf"{_RED}\1{_RESET}", line))
            for line in lines]
