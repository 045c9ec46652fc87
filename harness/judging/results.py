"""Result value objects: one CellResult per config x backend, gathered in a RunReport."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from harness.judging.compare import OracleDistance, TensorComparison
from harness.model.environment import Environment
from harness.errors import EXIT_DRIFT, EXIT_OK
from harness.judging.tolerance import Tolerance


class Verdict(enum.Enum):
    """A cell's verdict; `failing` ones make the run exit 1."""

    IDENTICAL = "identical"
    CLOSE = "close"
    DRIFT = "DRIFT"
    SHAPE = "SHAPE"
    INVARIANT = "INVARIANT"  # outputs break what the PyTorch documentation guarantees
    NONDETERMINISTIC = "NONDETERMINISTIC"
    ERROR = "ERROR"
    UNSUPPORTED = "unsupported"
    SLOW = "slow"  # left out of a default run; runs under --all
    UNAVAILABLE = "unavailable"  # the backend cannot run on this machine (e.g. no CUDA)

    @property
    def failing(self) -> bool:
        return self in (Verdict.DRIFT, Verdict.SHAPE, Verdict.INVARIANT, Verdict.NONDETERMINISTIC, Verdict.ERROR)


class Cause(enum.Enum):
    """The first link of the chain that differs from what the golden recorded."""

    INPUTS = "inputs changed"
    WEIGHTS = "weights changed"
    COMPUTE = "compute changed (same inputs and weights)"


@dataclass(frozen=True, kw_only=True)
class PastComparison:
    """A backend against its own fingerprint recorded with the golden (informational)."""

    status: str  # "unchanged", "moved" or "new"
    summary: str
    max_ulps: int = 0
    max_abs: float = 0.0


@dataclass(frozen=True, kw_only=True)
class CellResult:
    """What one backend computed for one config, judged against the golden."""

    config_id: str
    backend: str
    verdict: Verdict
    reason: str = ""
    tolerance: Tolerance | None = None
    tensors: tuple[TensorComparison, ...] = ()
    repeat: tuple[TensorComparison, ...] = ()  # second run vs first, when they differ
    cause: Cause | None = None
    oracle: OracleDistance | None = None  # this backend's distance to the float64 oracle
    golden_oracle: OracleDistance | None = None  # the golden's distance to the same oracle
    invariant_violations: tuple[str, ...] = ()
    argmax_changed: int | None = None  # positions whose argmax over output features moved
    analysis: tuple[str, ...] = ()  # RNN-aware explanation of a DRIFT
    past: PastComparison | None = None
    outputs_sha256: str = ""  # what this backend computed, to compare environments bitwise (merge)
    notes: tuple[str, ...] = ()
    prepare_seconds: float = 0.0
    run_seconds: float = 0.0

    @property
    def max_abs(self) -> float:
        return max((t.max_abs for t in self.tensors), default=0.0)

    @property
    def max_ulps(self) -> int:
        return max((t.max_ulps for t in self.tensors), default=0)


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """A whole run: every cell, the backends that could not run here, and the environment."""

    suite: str
    golden_dir: str
    config_ids: tuple[str, ...]
    backends: tuple[str, ...]
    cells: tuple[CellResult, ...]
    unavailable: dict[str, str] = field(default_factory=dict)
    environment: Environment
    environment_changes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # config id -> lines
    wall_seconds: float = 0.0
    label: str = ""  # names this environment when reports from several machines are merged
    shard: str = ""  # "K/N" when this run is one shard of the suite

    @property
    def failures(self) -> tuple[CellResult, ...]:
        return tuple(cell for cell in self.cells if cell.verdict.failing)

    @property
    def exit_code(self) -> int:
        return EXIT_DRIFT if self.failures else EXIT_OK

    def count(self, verdict: Verdict) -> int:
        return sum(1 for cell in self.cells if cell.verdict is verdict)
