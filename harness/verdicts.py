"""Every verdict the harness gives, in one place: cells, tensors, a backend against its own past,
determinism probes, and cross-environment agreement in merged reports.

Adding a verdict means editing this module, the JSON schema (reports/schemas/report.schema.json) and
the colour/format tables that key on these enums (reports/terminal.py, reports/html.py, reports/merge.py).
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    """A cell's verdict (config x backend); `failing` ones fail the run."""

    IDENTICAL = "identical"
    CLOSE = "close"
    DRIFT = "DRIFT"
    SHAPE = "SHAPE"
    INVARIANT = "INVARIANT"  # outputs break what the PyTorch documentation guarantees
    NONDETERMINISTIC = "NONDETERMINISTIC"
    ERROR = "ERROR"
    MISSING = "MISSING"  # no golden to compare with: record one (exit 2, the table is still printed)
    CORRUPT = "CORRUPT"  # its golden or stored artifact was refused: only its own cells (exit 2; re-record it)
    UNSUPPORTED = "unsupported"
    SLOW = "slow"  # left out of a default run; runs under --all
    UNAVAILABLE = "unavailable"  # the backend cannot run on this machine (e.g. no CUDA)

    @property
    def failing(self) -> bool:
        return self in _FAILING

    @property
    def not_computed(self) -> bool:
        """Nothing was compared: the cell says why, not how far."""
        return self in (Verdict.UNSUPPORTED, Verdict.SLOW, Verdict.UNAVAILABLE, Verdict.ERROR, Verdict.MISSING,
                        Verdict.CORRUPT)

    @property
    def bad_input(self) -> bool:
        """The golden itself is missing or refused: the run exits 2 (bad input), though every other cell is judged."""
        return self in (Verdict.MISSING, Verdict.CORRUPT)


_FAILING = frozenset({Verdict.DRIFT, Verdict.SHAPE, Verdict.INVARIANT, Verdict.NONDETERMINISTIC, Verdict.ERROR,
                      Verdict.MISSING, Verdict.CORRUPT})


class TensorStatus(enum.Enum):
    """How one produced tensor relates to its expected one."""

    IDENTICAL = "identical"
    CLOSE = "close"
    DRIFT = "drift"
    SHAPE = "shape"  # shape or dtype differs
    MISSING = "missing"  # expected but not produced
    UNEXPECTED = "unexpected"  # produced but not expected


class Cause(enum.Enum):
    """The first link of the chain that differs from what the golden recorded."""

    INPUTS = "inputs changed"
    WEIGHTS = "weights changed"
    COMPUTE = "compute changed (same inputs and weights)"


class ArtifactCause(enum.Enum):
    """For an exported backend: which side moved, from the stored artifact replayed under today's runtime
    next to a fresh export (same bytes, new numbers: the runtime; a fresh export that computes otherwise
    while the stored one does not: the exporter)."""

    UNCHANGED = "unchanged"
    EXPORT_ONLY = "export changed, numbers did not"
    EXPORTER = "exporter changed"
    RUNTIME = "runtime/artifact moved"
    BOTH = "exporter changed and runtime/artifact moved"
    REPLAY_FAILED = "stored artifact no longer runs"
    FORGED = "stored artifact does not compute this model"  # agrees with a fresh export on the golden's input only
    UNKNOWN = "no recorded fingerprint to compare with"


class PastStatus(enum.Enum):
    """A backend against its own fingerprint recorded with the golden."""

    UNCHANGED = "unchanged"
    MOVED = "moved"
    NEW = "new"  # no fingerprint of this backend in the golden


class ProbeVerdict(enum.Enum):
    """One determinism probe of one config x backend."""

    PASS = "pass"
    FAIL = "FAIL"  # nondeterminism
    DIFFERS = "differs"  # a pinned setting changes bits (fails only under --strict-settings)
    NOT_APPLICABLE = "n/a"
    UNSUPPORTED = "unsupported"
    ERROR = "error"
    SKIPPED = "skipped"


class Agreement(enum.Enum):
    """One config x backend across the environments of a merged report."""

    BITWISE = "bitwise"  # every environment computed the same bytes
    TOLERANCE = "tolerance"  # different bytes, all within tolerance of the golden
    DRIFT = "drift"  # some environment fails
    NOT_RUN = "n/a"


NO_AUTOGRAD = "has no autograd"  # in the reason of a forward-only backend's unsupported grad/train cell
