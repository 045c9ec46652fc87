"""Small formatting helpers every report shares: printable text, text tables, counted nouns, strict-JSON values."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable
from typing import Any

# GitHub Actions runs a workflow command from any line of a step's output: `::name::` at the start of a line
# (after leading whitespace), and the legacy `##[name]` anywhere in it.
_COMMAND = "::"
_LEGACY_COMMAND = "##["


def printable(text: object) -> str:
    """The text as one line that cannot act on a terminal or a CI log: every control character (C0, C1, DEL,
    ESC, CR/LF, Unicode format and separator characters) escaped as Python writes it (\\x1b, \\n, \\u202e),
    so no ANSI or OSC-8 sequence and no second line; a leading `::` and any `##[` broken, so no workflow
    command. Text that is already printable comes back unchanged, so applying it twice changes nothing more.
    Every report line made from a file (manifests, file names, upstream errors) passes through here."""
    value = str(text)
    if value.isprintable() and _LEGACY_COMMAND not in value and not value.lstrip(" ").startswith(_COMMAND):
        return value
    value = "".join(character if character.isprintable() else repr(character)[1:-1] for character in value)
    value = value.replace(_LEGACY_COMMAND, "##\\x5b")
    if value.lstrip(" ").startswith(_COMMAND):
        value = value.replace(":", "\\x3a", 1)
    return value


def printable_lines(lines: Iterable[str]) -> list[str]:
    """printable() applied to each line: what a report hands out to be printed or written."""
    return [printable(line) for line in lines]


def printable_json(document: Any) -> str:
    """Indented JSON for a terminal: control characters are escaped by JSON itself, and a legacy workflow
    command's `##[` is written with a JSON escape (the same value, but no command in the log)."""
    return json.dumps(document, indent=2, allow_nan=False).replace(_LEGACY_COMMAND, "##\\u005b")


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart, as wide as their widest entry."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def counted(count: int, noun: str, plural: str = "") -> str:
    """'1 config', '2 configs', '0 configs' ('1 golden', '3 goldens')."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def finite(value: float | None) -> float | str | None:
    """JSON has no inf/nan: write them as the strings "inf", "-inf" and "nan"."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def json_safe(value: Any) -> Any:
    """Tuples become lists and non-finite floats strings ("inf", "nan"): strict JSON has neither."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value
