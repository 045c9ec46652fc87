"""Result value objects: one CellResult per config x backend, gathered in a RunReport, and one
ProbeResult per determinism probe. Reports read these and nothing else of the run."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from harness.errors import EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_OK
from harness.judging.compare import OracleDistance, TensorComparison
from harness.judging.localisation import Localisation
from harness.judging.relations import RelationOutcome
from harness.model.environment import Environment
from harness.model.tolerance import Tolerance
from harness.verdicts import ArtifactCause, Cause, PastStatus, ProbeVerdict, Verdict


@dataclass(frozen=True, kw_only=True)
class PastComparison:
    """A backend against its own fingerprint recorded with the golden (informational)."""

    status: PastStatus
    summary: str
    max_ulps: int = 0
    max_abs: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ArtifactCheck:
    """An exported backend's stored artifact against a fresh export: which of exporter and runtime moved."""

    cause: ArtifactCause
    summary: str
    same_bytes: bool = False  # the fresh export is bitwise the stored artifact
    replay: PastComparison | None = None  # the stored artifact run now, against its recorded fingerprint
    structure_diff: tuple[str, ...] = ()  # the fresh export's structure against the stored one's (ONNX)

    @property
    def changed(self) -> bool:
        return self.cause is not ArtifactCause.UNCHANGED


@dataclass(frozen=True, kw_only=True)
class WeightsChange:
    """The case's weights are not the golden's. `parameters`: every state_dict entry whose sha256 differs (or that
    only one side has), the model's order first; empty when no parameter can be named, `named` says why."""

    parameters: tuple[str, ...] = ()
    named: bool = True  # False: the golden predates per-parameter hashes (harness.golden/1 or /2)


class LimitationStatus(enum.Enum):
    """A backend the golden recorded as unable to take a user's model, tried again in this run."""

    REPRODUCED = "reproduced"  # it fails as recorded: unsupported, not failing
    RESOLVED = "now runs"  # it runs now and is judged: recording it again stores its fingerprint
    CHANGED = "fails differently"  # another error than the recorded one: ERROR


@dataclass(frozen=True, kw_only=True)
class RecordedLimitation:
    """What the golden recorded when the backend could not take the model (first line and whole error), against
    what it did in this run (`observed`: the first line of today's error; empty when it ran)."""

    status: LimitationStatus
    recorded: str
    recorded_detail: str = ""
    observed: str = ""


@dataclass(frozen=True, kw_only=True)
class CellResult:
    """What one backend computed for one config, judged against the golden."""

    config_id: str
    backend: str
    verdict: Verdict
    reason: str = ""
    reason_detail: str = ""  # the whole upstream error behind the reason (every line, printable, bounded), if any
    limitation: RecordedLimitation | None = None  # the golden recorded this backend as unable to take the model
    tolerance: Tolerance | None = None
    tensors: tuple[TensorComparison, ...] = ()
    repeat: tuple[TensorComparison, ...] = ()  # second run vs first, when they differ
    cause: Cause | None = None
    weights_changed: WeightsChange | None = None  # whatever the verdict: a passing cell's weights can differ too
    oracle: OracleDistance | None = None  # this backend's distance to the float64 oracle
    golden_oracle: OracleDistance | None = None  # the golden's distance to the same oracle
    invariant_violations: tuple[str, ...] = ()
    relations: tuple[RelationOutcome, ...] = ()  # the case's invariance relations on this backend (judging.relations)
    argmax_changed: int | None = None  # positions whose argmax over output features moved
    analysis: tuple[str, ...] = ()  # RNN-aware explanation of a DRIFT
    past: PastComparison | None = None
    outputs_sha256: str = ""  # what this backend computed, to compare environments bitwise (merge)
    artifact_check: ArtifactCheck | None = None  # exported backends whose golden stores their artifact
    artifact_source: str = ""  # "cache", "exported", "stored" (replay), or why the cache entry was rebuilt
    runtime_finding: str = ""  # ONNX Runtime against the reference evaluator on the same export (judging.runtimes)
    localisation: Localisation | None = None  # where a DRIFT starts: layer, direction, step (judging.localisation)
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
    # what else differs (platform string, python, core count): context, shown under -v
    environment_context: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stale: tuple[str, ...] = ()  # goldens in the directory that no config of the suite uses
    leftovers: tuple[str, ...] = ()  # temporary or orphaned files no manifest refers to
    warnings: tuple[str, ...] = ()  # e.g. a float32 tolerance loose enough to let a real drift pass
    live_reference: bool = False  # `harness check`: judged against eager computed now, not goldens
    replay: bool = False  # `harness replay`: the stored artifacts run under today's runtimes
    cache_dir: str = ""  # the export cache this run used ("" when off)
    backend_settings: dict[str, dict[str, object]] = field(default_factory=dict)  # e.g. torch.compile's
    hints: dict[str, str] = field(default_factory=dict)  # what to run next, keyed by situation
    wall_seconds: float = 0.0
    label: str = ""  # names this environment when reports from several machines are merged
    shard: str = ""  # "K/N" when this run is one shard of the suite

    @property
    def failures(self) -> tuple[CellResult, ...]:
        return tuple(cell for cell in self.cells if cell.verdict.failing)

    @property
    def exit_code(self) -> int:
        """2 when a golden is missing or refused (bad input, though every other cell was judged), else 1 on any
        failure."""
        if any(cell.verdict.bad_input for cell in self.cells):
            return EXIT_BAD_INPUT
        return EXIT_DRIFT if self.failures else EXIT_OK

    def upstream_counts(self) -> dict[tuple[str, str], int]:
        """(backend, upstream warning) -> how many cells raised it, in first-seen order."""
        counts: dict[tuple[str, str], int] = {}
        for cell in self.cells:
            for note in cell.notes:
                counts[(cell.backend, note)] = counts.get((cell.backend, note), 0) + 1
        return counts

    def count(self, verdict: Verdict) -> int:
        return sum(1 for cell in self.cells if cell.verdict is verdict)


PROBES = ("repeat", "fresh-process", "seed", "torch-threads", "deterministic", "ort-threads", "ort-optimization")
# Probes of settings the harness pins (threads, ORT optimisation) or may toggle (deterministic mode): a
# difference there says the setting matters, so goldens hold only with it pinned; it is "differs",
# and fails the run only under --strict-settings. A difference in the other probes is nondeterminism: FAIL.
SETTING_PROBES = frozenset({"torch-threads", "deterministic", "ort-threads", "ort-optimization"})


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """One determinism probe of one config x backend."""

    config_id: str
    backend: str
    probe: str
    verdict: ProbeVerdict
    detail: str = ""
    max_abs: float = 0.0
    strict: bool = False  # --strict-settings: "differs" fails too
    reason_detail: str = ""  # the whole upstream error behind an error or unsupported probe (printable, bounded)

    @property
    def failing(self) -> bool:
        return self.verdict in (ProbeVerdict.FAIL, ProbeVerdict.ERROR) or (
            self.strict and self.verdict is ProbeVerdict.DIFFERS)
