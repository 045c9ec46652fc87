"""Small formatting helpers every report shares: printable text (harness.errors.printable), text tables,
counted nouns, strict-JSON values."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable
from typing import Any

from harness.errors import printable as printable  # re-exported: the reports import it from here

_LEGACY_COMMAND = "##["


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
