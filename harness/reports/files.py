"""Writing report files: paths checked before the run starts, and a failed write as one line (exit 2)
after the terminal report was already printed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.errors import HarnessError

Render = Callable[[], str | bytes]


class OutputError(HarnessError):
    """A report file that cannot be written where the user asked."""


def check_output_paths(paths: Iterable[Path | None]) -> None:
    """Refuse, before any work, a report path whose directory is missing or that is a directory."""
    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            raise OutputError(f"{path}: is a directory; give a file path for the report")
        parent = path.parent if str(path.parent) else Path(".")
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{path}: {parent} is not a directory")
        if not parent.is_dir():
            raise OutputError(f"{path}: directory {parent} does not exist; create it or choose another path")
        if not os.access(parent, os.W_OK):
            raise OutputError(f"{path}: directory {parent} is not writable")


def write_outputs(outputs: Iterable[tuple[Path | None, Render]]) -> list[str]:
    """Render and write each requested file (None: not requested); returns the paths written."""
    written = []
    for path, render in outputs:
        if path is None:
            continue
        content = render()
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        try:
            path.write_bytes(data)
        except OSError as error:
            raise OutputError(f"{path}: cannot write the report: {error.strerror or error}") from None
        written.append(str(path))
    return written


def step_summary_path() -> str | None:
    """GitHub Actions' step summary file, when the run is one of its steps."""
    return os.environ.get("GITHUB_STEP_SUMMARY") or None


def write_summary(text: str, path: Path | None) -> list[str]:
    """A Markdown summary to path (if given) and appended to $GITHUB_STEP_SUMMARY (if set)."""
    written = write_outputs([(path, lambda: text)])
    summary = step_summary_path()
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            raise OutputError(f"$GITHUB_STEP_SUMMARY ({summary}): cannot append: {error.strerror or error}") from None
        written.append(f"$GITHUB_STEP_SUMMARY ({summary})")
    return written
