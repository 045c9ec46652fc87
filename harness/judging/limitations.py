"""Recorded limitations: a backend that could not take a user's model when its golden was recorded.

The golden holds that fact (the backend's fingerprint has status "unsupported", the first line of the upstream
error and the whole of it). Every run tries the backend again: failing as recorded is unsupported (not a
failure), failing another way is an ERROR naming both errors, and running is judged like any cell, with a note
that the golden should be recorded again. Built-in configs keep the backends' own known-limitation table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.errors import printable
from harness.judging.results import CellResult, LimitationStatus, RecordedLimitation
from harness.model.config import RnnConfig
from harness.store.golden import Golden
from harness.verdicts import Verdict

# Parts of an upstream error that differ between two processes for the same cause: object addresses and the
# names TorchScript mangles a class to when it compiles it again.
_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|___torch_mangle_\d+\.")
RECORDED_HEADING = "recorded with the golden:"  # a changed failure's detail: today's error, this, the recorded one


@dataclass(frozen=True, kw_only=True)
class RecordedFailure:
    """What the golden recorded of the backend's failure: the first line, and the whole error ("" in goldens
    recorded before the whole error was kept)."""

    reason: str
    detail: str = ""


def recorded_failure(config: RnnConfig, golden: Golden, backend: str) -> RecordedFailure | None:
    """The golden's record that the backend could not take this user's model, every line printable; None for a
    built-in config or a backend the golden holds no such record of."""
    fingerprint = golden.backend_fingerprints.get(backend) or {}
    if not config.model or fingerprint.get("status") != "unsupported":
        return None
    return RecordedFailure(reason=printable(fingerprint.get("reason", "")), detail=recorded_detail(fingerprint))


def recorded_detail(fingerprint: dict[str, Any]) -> str:
    """The whole upstream error a fingerprint recorded with a failure, read from a file: each line escaped, as
    the reports print it ("" when none was recorded)."""
    detail = str(fingerprint.get("detail", ""))
    return "\n".join(printable(line) for line in detail.split("\n")) if detail else ""


def same_failure(recorded: str, observed: str) -> bool:
    """The two first lines name the same error, addresses and mangled class names aside."""
    return _VOLATILE.sub("", recorded) == _VOLATILE.sub("", observed)


def failed_again(config_id: str, backend: str, recorded: RecordedFailure, *, observed: str,
                 detail: str) -> CellResult:
    """The cell of a backend that fails again on a model recorded as unsupported for it: unsupported when it
    fails as recorded, ERROR with both errors when it fails otherwise. `observed`/`detail`: today's error, its
    first line and the whole of it."""
    if same_failure(recorded.reason, observed):
        return CellResult(config_id=config_id, backend=backend, verdict=Verdict.UNSUPPORTED,
                          reason=f"recorded: {recorded.reason}", reason_detail=detail,
                          limitation=limitation(LimitationStatus.REPRODUCED, recorded, observed))
    before = f"\n{RECORDED_HEADING}\n{recorded.detail}" if recorded.detail else ""
    return CellResult(config_id=config_id, backend=backend, verdict=Verdict.ERROR,
                      reason=f"fails differently than recorded with the golden: now {observed}; "
                             f"recorded {recorded.reason}",
                      reason_detail=detail + before,
                      limitation=limitation(LimitationStatus.CHANGED, recorded, observed))


def limitation(status: LimitationStatus, recorded: RecordedFailure, observed: str = "") -> RecordedLimitation:
    """The recorded failure against this run (`observed`: today's first line; "" when the backend ran)."""
    return RecordedLimitation(status=status, recorded=recorded.reason, recorded_detail=recorded.detail,
                              observed=observed)
