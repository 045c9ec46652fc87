"""The text of `harness list --backends`: one block per backend, from session.catalog's entries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.reports.text import counted, printable_lines

if TYPE_CHECKING:  # the entries are plain value objects; the catalog that builds them imports the backends
    from harness.backends.catalog import BackendEntry


def backend_lines(entries: list[BackendEntry], suite: str) -> list[str]:
    """The backend list, every line printable (an unavailable backend's reason is upstream error text)."""
    lines = [f"backends (known limitations and slow cells over the configs of {suite}):"]
    for entry in entries:
        state = "available" if entry.available else f"unavailable here: {entry.reason}"
        tags = [state, "default" if entry.default else "not run by default"]
        tags += [f"family {family}" for family in entry.families]
        if entry.artifact:
            tags.append(f"stores {entry.artifact} artifacts")
        lines += ["", f"{entry.name}  ({'; '.join(tags)})", f"  {entry.description}"]
        for reason, ids in entry.limitations.items():
            lines.append(f"  unsupported on {counted(len(ids), 'config')} ({', '.join(ids)}): {reason}")
        if entry.slow:
            lines.append(f"  slow, left out without --all: {', '.join(entry.slow)}")
        if not entry.limitations and not entry.slow:
            lines.append("  no known limitation on this suite")
    return printable_lines(lines)
