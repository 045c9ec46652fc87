"""The session: one core that owns a harness run end to end, for every entry point.

`harness run|check|probe|record|show|prune`, the pytest plugin, the rnn_golden fixture and the
probe worker all go through a Session. It owns the suite and its selection, backend resolution,
the case and golden caches, thread pinning, and the whole golden life cycle (load, missing, stale,
record, force, prune). Shells only parse, call and print.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.backends import (
    REFERENCE_BACKEND,
    SAME_EXPORT_RUNTIMES,
    default_backend_names,
    expand_backend_names,
    resolve_backends,
)
from harness.backends.base import Backend
from harness.backends.deadline import CellBudgetExceeded, cell_budget
from harness.errors import GoldenError, UnknownNameError
from harness.judging.compare import non_finite
from harness.judging.judge import CaseFacts
from harness.judging.results import CellResult, RunReport
from harness.judging.runtimes import with_runtime_findings
from harness.model.calibration import Calibration, calibrate
from harness.model.config import RnnConfig
from harness.model.dtypes import LOW_PRECISION
from harness.model.environment import Environment, environment_differences, environment_label, utc_now
from harness.model.factories import load_factory
from harness.model.shard import select_shard
from harness.model.suite import Suite, load_suite
from harness.model.tolerance import LOOSE_FLOAT32_ATOL, TolerancePolicy
from harness.session.artifacts import stored_entry
from harness.session.execution import case_facts, environment_now, execute, judged_cell, pinned_threads
from harness.session.localise import localise_run_cell
from harness.session.record import RecordResult, backend_settings, describe_changes, fingerprint_backends
from harness.session.settings import Settings, policy_for
from harness.store.cache import ExportCache, default_cache_dir
from harness.store.golden import Golden, GoldenStore, default_golden_dir
from harness.verdicts import Verdict

if TYPE_CHECKING:  # building a case imports torch: commands that build none (prune) never import it
    from harness.model.case import Case


@dataclass(frozen=True, kw_only=True)
class PreparedCase:
    """A built case and what judging needs to know about it, built once per config."""

    case: Case
    facts: CaseFacts


def calibration_for(config: RnnConfig, reference: dict[str, np.ndarray], facts: CaseFacts) -> Calibration | None:
    """A float16/bfloat16 golden's tolerance, calibrated on the float64 oracle of its own case."""
    if config.dtype not in LOW_PRECISION or facts.oracle is None:
        return None
    return calibrate(reference, facts.oracle, config.dtype)


class Session:
    """A harness run over one suite, golden directory and set of backends (see Settings)."""

    def __init__(self, settings: Settings | None = None, *,
                 record_hint: Callable[[str, bool], str] | None = None) -> None:
        self.settings = settings or Settings()
        self._record_hint = record_hint or self.cli_record_hint
        self._cases: dict[str, PreparedCase] = {}
        self._goldens: dict[str, Golden | None] = {}
        self._written: set[str] = set()  # goldens this process recorded through ensure_golden
        self._over_budget: dict[str, str] = {}  # config id -> why its case could not be built within the budget
        self._refused: dict[str, str] = {}  # config id -> why its golden was refused (corrupt): read once

    # --- what the session runs -------------------------------------------------------------------

    @functools.cached_property
    def suite(self) -> Suite:
        return load_suite(self.settings.suite, max_memory=self.settings.max_memory)

    @functools.cached_property
    def configs(self) -> tuple[RnnConfig, ...]:
        """The selected configs (--config), in suite order, then the shard."""
        configs = self.suite.select(list(self.settings.configs))
        return select_shard(configs, *self.settings.shard) if self.settings.shard else configs

    def require_models(self) -> None:
        """Import every model factory the selected configs name: a typo in a reference is one line and exit 2,
        not a MISSING golden. This runs the user's code (a suite that names a model is code, like a
        conftest.py): only the commands that build models call it, never replay, list, show, prune or bundle."""
        for reference in dict.fromkeys(config.model for config in self.configs if config.model):
            load_factory(reference)

    def config(self, config_id: str) -> RnnConfig:
        """A config of the whole suite by id; UnknownNameError naming the suite otherwise."""
        return self.suite.select([config_id])[0]

    @functools.cached_property
    def policy(self) -> TolerancePolicy:
        return policy_for(self.settings, self.suite.tolerances)

    @functools.cached_property
    def backend_names(self) -> tuple[str, ...]:
        return tuple(expand_backend_names(self.settings.backends or default_backend_names()))

    @functools.cached_property
    def _resolved(self) -> tuple[dict[str, Backend], dict[str, str]]:
        backends, unavailable = resolve_backends(self.backend_names, required=self.settings.backends_named)
        return {backend.name: backend for backend in backends}, unavailable

    @property
    def unavailable(self) -> dict[str, str]:
        """Backend name -> why it cannot run here."""
        return self._resolved[1]

    def backend(self, name: str) -> Backend:
        backends = self._resolved[0]
        if name not in backends:
            raise UnknownNameError(f"backend {name!r} is not in this session's backends: {', '.join(backends)}")
        return backends[name]

    def runnable_backends(self) -> list[Backend]:
        return [backend for name, backend in self._resolved[0].items() if name not in self.unavailable]

    # --- goldens ---------------------------------------------------------------------------------

    @functools.cached_property
    def golden_dir(self) -> Path:
        return self.settings.golden_dir or default_golden_dir()

    @functools.cached_property
    def store(self) -> GoldenStore:
        return GoldenStore(self.golden_dir)

    @functools.cached_property
    def cache(self) -> ExportCache | None:
        """The export cache, or None under --no-cache or when it cannot be written (the run says why)."""
        if not self.settings.cache:
            return None
        cache = ExportCache(self.settings.cache_dir or default_cache_dir())
        return None if cache.unusable() else cache

    def cache_warnings(self) -> tuple[str, ...]:
        if not self.settings.cache:
            return ()
        problem = ExportCache(self.settings.cache_dir or default_cache_dir()).unusable()
        return (f"export cache off for this run: {problem}",) if problem else ()

    def require_golden_dir(self) -> None:
        """A golden directory that is missing or a file is reported as exactly that."""
        self.store.require_directory()

    def golden(self, config: RnnConfig) -> Golden | None:
        """The config's verified golden (cached), None when there is none; GoldenError when it is corrupt
        or was recorded for a different config."""
        if self.settings.live_reference:
            return self._live_golden(config)
        if config.id in self._refused:
            raise GoldenError(self._refused[config.id])
        if config.id not in self._goldens:
            try:
                self._goldens[config.id] = self.store.load_for(config) if self.store.exists(config.id) else None
            except GoldenError as error:
                self._refused[config.id] = error.message
                raise
        return self._goldens[config.id]

    def corrupt_cell(self, config_id: str, backend_name: str, error: GoldenError) -> CellResult:
        """A cell whose golden or stored artifact was refused: CORRUPT with the one-line reason and the command
        that records it again; it costs only its own cells (every other cell is still judged; exit 2)."""
        return CellResult(config_id=config_id, backend=backend_name, verdict=Verdict.CORRUPT,
                          reason=f"{error.message}; record it again: {self._record_hint(config_id, True)}")

    def stale_goldens(self) -> tuple[str, ...]:
        """Suite goldens in the directory that no config of the whole suite uses (independent of the
        selection, the shard and pytest's -k)."""
        if not self.golden_dir.is_dir():
            return ()
        used = set(self.suite.ids())
        return tuple(config_id for config_id in self.store.stored_ids() if config_id not in used)

    def prune(self, *, delete: bool) -> tuple[Path, ...]:
        """The files of every stale golden: removed when delete, else only listed (a dry run)."""
        self.require_golden_dir()
        stale = self.stale_goldens()
        return self.store.remove(stale, dry_run=not delete)

    def record(self, config: RnnConfig, *, force: bool, fingerprint: bool = True) -> RecordResult:
        """Compute the golden on the reference backend (eager CPU), fingerprint every runnable backend
        of the session against it, and write it atomically; refuses to overwrite without force."""
        previous, corrupt = self.store.previous(config.id, force=force)
        with self.pinned():
            prepared = self.prepared(config)
            reference = execute(prepared.case, self._reference_backend()).first
            self._refuse_non_finite(config, reference)
            backends = self.runnable_backends() if fingerprint else []
            recorded = fingerprint_backends(prepared.case, backends, reference,
                                            include_slow=self.settings.include_slow, cache=self.cache)
            environment = self.environment()
        golden = Golden(
            config=config, tensors=reference, weights_sha256=prepared.case.weights_sha256,
            parameters_sha256=prepared.case.parameters_sha256,
            inputs_sha256=prepared.case.inputs_sha256, recorded_by=REFERENCE_BACKEND, recorded_at=utc_now(),
            environment=environment, backend_fingerprints=recorded.fingerprints,
            backend_tensors=recorded.backend_tensors,
            artifacts={backend: stored_entry(config.id, backend, artifact, built_in_rnn=not config.model)
                       for backend, artifact in recorded.artifacts.items()},
            calibration=calibration_for(config, reference, prepared.facts),
            stored_inputs=dict(prepared.case.inputs) if config.inputs else {},  # a replay cannot call the function
        )
        path, cleaned = self.store.write(
            golden, force=force, artifacts={backend: artifact.data for backend, artifact in recorded.artifacts.items()})
        self._goldens.pop(config.id, None)
        return RecordResult.of(config.id, path, golden, previous=previous, corrupt=corrupt, cleaned=cleaned,
                               changes=describe_changes(previous, golden) if previous else ())

    def ensure_golden(self, config: RnnConfig, *, update: bool, force: bool) -> str:
        """The plugin's life cycle: record a missing golden under update, rewrite it under force (once per
        process). Returns "recorded" or "rewritten" when this call wrote it, else ""."""
        exists = self.store.exists(config.id)
        if not update or (exists and not force) or config.id in self._written:
            return ""
        try:
            # A user's model is fingerprinted as `harness record` does: a backend that cannot take it is
            # recorded as unsupported there, and the items that follow pass instead of failing each run.
            self.record(config, force=exists, fingerprint=bool(config.model))
        except GoldenError:
            if exists or not self.store.exists(config.id):  # else another xdist worker won a race writing it
                raise
        self._written.add(config.id)
        return "rewritten" if exists else "recorded"

    # --- running ---------------------------------------------------------------------------------

    @contextmanager
    def pinned(self) -> Iterator[None]:
        with pinned_threads(self.settings.threads):
            yield

    def environment(self) -> Environment:
        return environment_now(self.settings.threads)

    def prepared(self, config: RnnConfig) -> PreparedCase:
        """The config's seeded case and its facts, built once per session."""
        if config.id not in self._cases:
            from harness.model.case import build_case

            case = build_case(config)
            # Each parameter's sha256, so that a cell whose weights are not the golden's names which changed.
            facts = dataclasses.replace(case_facts(case), parameters_sha256=case.parameters_sha256)
            self._cases[config.id] = PreparedCase(case=case, facts=facts)
        return self._cases[config.id]

    def judge(self, config: RnnConfig, backend_name: str) -> CellResult:
        """One cell: unavailable, MISSING, slow, unsupported, or the backend's outputs judged."""
        if backend_name in self.unavailable:
            return CellResult(config_id=config.id, backend=backend_name, verdict=Verdict.UNAVAILABLE,
                              reason=self.unavailable[backend_name])
        if config.id in self._over_budget:  # its case (the float64 reference run) already ran out of time
            return CellResult(config_id=config.id, backend=backend_name, verdict=Verdict.ERROR,
                              reason=self._over_budget[config.id])
        try:
            with cell_budget(self.settings.cell_budget):
                return self._judge_within_budget(config, backend_name)
        except GoldenError as error:  # its golden, or the artifact stored with it, was refused by its gate
            return self.corrupt_cell(config.id, backend_name, error)
        except CellBudgetExceeded as error:
            if config.id not in self._cases:  # the case itself (or a live golden) took the budget
                self._over_budget[config.id] = f"building the case and its reference: {error}"
            return CellResult(config_id=config.id, backend=backend_name, verdict=Verdict.ERROR,
                              reason=self._over_budget.get(config.id, str(error)))

    def _judge_within_budget(self, config: RnnConfig, backend_name: str) -> CellResult:
        golden = self.golden(config)
        if golden is None:
            return CellResult(config_id=config.id, backend=backend_name, verdict=Verdict.MISSING,
                              reason=self.missing_reason(config.id))
        with self.pinned():
            prepared = self.prepared(config)
            # The stricter of the recorded calibration and the one the golden's tensors give against this run's
            # oracle: neither an edited manifest nor edited tensors can loosen it.
            recomputed = calibration_for(config, golden.tensors, prepared.facts)
            candidates = [found for found in (golden.calibration, recomputed) if found is not None]
            calibration = min(candidates, key=lambda found: found.atol) if candidates else None
            tolerance = self.policy.for_cell(backend_name, config.dtype, config.id,
                                             calibrated=calibration.tolerance() if calibration else None)
            cell = judged_cell(prepared.case, prepared.facts, self.backend(backend_name), golden, tolerance,
                               include_slow=self.settings.include_slow, cache=self.cache,
                               store=None if self.settings.live_reference else self.store)
        # A live reference has no recorded fingerprints: there is no past to compare with.
        if self.settings.live_reference:
            return dataclasses.replace(cell, past=None)
        return localise_run_cell(self, config, cell)  # a DRIFT cell: where in the stack it starts

    def run(self, on_cell: Callable[[CellResult], None] | None = None) -> RunReport:
        """Every selected config on every backend of the session, each judged against its golden."""
        started = time.perf_counter()
        if not self.settings.live_reference:
            self.require_golden_dir()
        configs = self.configs
        self.require_models()
        names = self.backend_names
        self._resolved  # noqa: B018  # resolve (and reject unavailable named backends) before any work
        cells = list(with_runtime_findings(self.judge_all(configs, names, on_cell), SAME_EXPORT_RUNTIMES))
        environment = self.environment()
        return RunReport(
            suite=self.suite.source,
            golden_dir="(live eager reference)" if self.settings.live_reference else str(self.golden_dir),
            config_ids=tuple(config.id for config in configs), backends=names, cells=tuple(cells),
            unavailable=dict(self.unavailable), environment=environment,
            environment_changes=self.environment_changes_since_goldens(environment, context=False),
            environment_context=self.environment_changes_since_goldens(environment, context=True),
            stale=() if self.settings.live_reference else self.stale_goldens(),
            leftovers=() if self.settings.live_reference else tuple(map(str, self.store.leftovers())),
            warnings=self.tolerance_warnings() + self.cache_warnings(),
            live_reference=self.settings.live_reference,
            cache_dir=str(self.cache.root) if self.cache else "",
            backend_settings={backend.name: settings for backend in self.runnable_backends()
                              if (settings := backend_settings(backend))},
            hints={"record": self.cli_command("record"), "prune": self.cli_command("prune")},
            wall_seconds=time.perf_counter() - started,
            label=self.settings.label or environment_label(environment),
            shard="/".join(map(str, self.settings.shard)) if self.settings.shard else "",
        )

    def judge_all(self, configs: tuple[RnnConfig, ...], names: tuple[str, ...],
                  on_cell: Callable[[CellResult], None] | None = None) -> list[CellResult]:
        """Every config x backend in this process (session.parallel.ParallelSession spreads them over workers)."""
        cells = []
        for config in configs:
            for name in names:
                cells.append(self.judge(config, name))
                if on_cell:
                    on_cell(cells[-1])
        return cells

    def tolerance_warnings(self) -> tuple[str, ...]:
        """Tolerances loose enough (above 1e-3) for float32 configs that a real drift passes."""
        warnings = []
        override = self.settings.override
        if override is not None and any(override.looser_than_float32_sense(c.dtype) for c in self.configs):
            warnings.append(f"tolerance {override.describe()} for every cell is looser than {LOOSE_FLOAT32_ATOL:g} "
                            "on float32 configs: a real drift can pass")
        for config in self.configs:
            own = self.suite.tolerances.get(config.id)
            if override is None and own is not None and own.looser_than_float32_sense(config.dtype):
                warnings.append(f"{config.id}: its own tolerance {own.describe()} is looser than "
                                f"{LOOSE_FLOAT32_ATOL:g} on a float32 config: a real drift can pass")
        return tuple(warnings)

    def output_sha256(self, config: RnnConfig, backend_name: str) -> str:
        """sha256 of what one backend computes for one config (the fresh-process probe's unit)."""
        from harness.model.hashing import arrays_sha256

        with self.pinned():
            return arrays_sha256(execute(self.prepared(config).case, self.backend(backend_name), self.cache).first)

    # --- hints -----------------------------------------------------------------------------------

    def cli_command(self, command: str) -> str:
        """`harness COMMAND` with this session's own --suite and --golden-dir, ready to paste."""
        parts = ["harness", command]
        if self.settings.suite is not None:
            parts += ["--suite", str(self.settings.suite)]
        if self.settings.golden_dir is not None:
            parts += ["--golden-dir", str(self.settings.golden_dir)]
        return " ".join(parts)

    def cli_record_hint(self, config_id: str, force: bool = False) -> str:
        return f"{self.cli_command('record')}{' --force' if force else ''} --config {config_id}"

    def missing_reason(self, config_id: str) -> str:
        return f"no golden {self.store.manifest_path(config_id)}; record it: {self._record_hint(config_id, False)}"

    # --- internals -------------------------------------------------------------------------------

    def _refuse_non_finite(self, config: RnnConfig, reference: dict[str, np.ndarray]) -> None:
        """A golden holding NaN or inf is recorded only when asked for (--allow-nonfinite)."""
        if self.settings.allow_nonfinite:
            return
        for name, array in reference.items():
            found = non_finite(array)
            if found:
                raise GoldenError(f"{config.id}: the reference {name} holds {found.count} non-finite value(s) "
                                  f"(first at {found.first_index}); not recorded: pass --allow-nonfinite to "
                                  "record them anyway")

    def _reference_backend(self) -> Backend:
        from harness.backends import get_backend

        return get_backend(REFERENCE_BACKEND)

    def _live_golden(self, config: RnnConfig) -> Golden:
        if config.id not in self._goldens:
            with self.pinned():
                prepared = self.prepared(config)
                outputs = execute(prepared.case, self._reference_backend()).first
                environment = self.environment()
            self._goldens[config.id] = Golden(
                config=config, tensors=outputs, weights_sha256=prepared.case.weights_sha256,
                parameters_sha256=prepared.case.parameters_sha256, inputs_sha256=prepared.case.inputs_sha256,
                recorded_by=f"{REFERENCE_BACKEND} (live, this run)",
                recorded_at=utc_now(), environment=environment,
                calibration=calibration_for(config, outputs, prepared.facts),
            )
        golden = self._goldens[config.id]
        assert golden is not None
        return golden

    def environment_changes_since_goldens(self, now: Environment, *, context: bool) -> dict[str, tuple[str, ...]]:
        if self.settings.live_reference:
            return {}
        changes = {}
        for config_id, golden in self._goldens.items():
            if golden is not None:
                lines = environment_differences(golden.environment, now, context=context)
                if lines:
                    changes[config_id] = tuple(lines)
        return changes
