"""The library core: run configs on backends and judge each cell against its golden."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.backends import REFERENCE_BACKEND, expand_backend_names, get_backend
from harness.backends.base import Backend
from harness.backends.capture import captured_upstream_messages, first_line
from harness.model.case import Case, build_case
from harness.model.config import RnnConfig
from harness.model.environment import Environment, current_environment, environment_differences, utc_now
from harness.errors import BackendUnavailableError, GoldenError
from harness.store.golden import Golden, GoldenStore
from harness.judging.judge import CaseFacts, Execution, judge_cell
from harness.judging.oracle import Variant, oracle_outputs
from harness.judging.results import CellResult, RunReport, Verdict
from harness.judging.tolerance import TolerancePolicy

DEFAULT_THREADS = 1  # bitwise results depend on the intra-op thread count: pin it (FINDINGS.md)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    backends: tuple[str, ...]
    include_slow: bool = False
    policy: TolerancePolicy = field(default_factory=TolerancePolicy)
    threads: int = DEFAULT_THREADS
    require_available: bool = False  # True when the user named the backends: unavailable is then an error
    live_reference: bool = False  # judge against eager computed now instead of stored goldens


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Set torch's intra-op threads for the block and restore them after."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def environment_now(threads: int) -> Environment:
    import torch

    cuda = f"{torch.version.cuda} ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "none"
    return current_environment(torch_threads=threads, cuda=cuda)


def run_suite(
    configs: Sequence[RnnConfig],
    store: GoldenStore,
    options: RunOptions,
    *,
    suite_source: str = "",
    on_cell: Callable[[CellResult], None] | None = None,
) -> RunReport:
    """Every config on every available backend, each compared to its golden (stored, or live)."""
    started = time.perf_counter()
    stored = {} if options.live_reference else {config.id: load_matching_golden(store, config) for config in configs}
    backends, unavailable = resolve_backends(options.backends, required=options.require_available)
    environment = environment_now(options.threads)
    cells: list[CellResult] = []
    with pinned_threads(options.threads):
        for config in configs:
            case = build_case(config)
            facts = case_facts(case)
            golden = live_golden(case, options.threads) if options.live_reference else stored[config.id]
            for backend in backends:
                if backend.name in unavailable:
                    reason = unavailable[backend.name]
                    cell = CellResult(config_id=config.id, backend=backend.name, verdict=Verdict.UNAVAILABLE,
                                      reason=reason)
                else:
                    cell = run_cell(case, facts, backend, golden, options)
                cells.append(cell)
                if on_cell:
                    on_cell(cell)
    changes = {
        config_id: tuple(environment_differences(golden.environment, environment))
        for config_id, golden in stored.items()
    }
    return RunReport(
        suite=suite_source, golden_dir="(live eager reference)" if options.live_reference else str(store.root),
        config_ids=tuple(config.id for config in configs),
        backends=tuple(backend.name for backend in backends),
        cells=tuple(cells), unavailable=unavailable, environment=environment,
        environment_changes={key: value for key, value in changes.items() if value},
        wall_seconds=time.perf_counter() - started,
    )


def resolve_backends(names: Sequence[str], *, required: bool = False) -> tuple[list[Backend], dict[str, str]]:
    """The named backends (families expanded), and the reason for each one that cannot run here.

    required: the user named them, so one that cannot run is a BackendUnavailableError (exit 2).
    """
    backends = [get_backend(name) for name in expand_backend_names(names)]
    statuses = {backend.name: backend.availability() for backend in backends}
    unavailable = {name: status.reason for name, status in statuses.items() if not status.available}
    if required and unavailable:
        name, reason = next(iter(unavailable.items()))
        raise BackendUnavailableError(f"backend {name} is unavailable here: {reason}")
    return backends, unavailable


def load_matching_golden(store: GoldenStore, config: RnnConfig) -> Golden:
    golden = store.load(config.id)
    if golden.config.content_hash != config.content_hash:
        raise GoldenError(
            f"{store.manifest_path(config.id)}: recorded for a different config than the suite's "
            f"{config.id!r} (content hash {golden.config.content_hash[:12]} vs {config.content_hash[:12]})"
        )
    return golden


def case_facts(case: Case) -> CaseFacts:
    """What judging needs about the case: hashes, and the float64 oracle on its own weights."""
    weights = {name: tensor.detach().cpu().numpy() for name, tensor in case.module.state_dict().items()}

    def variant_oracle(variant: Variant) -> dict[str, np.ndarray]:
        return oracle_outputs(case.config, weights, case.inputs, variant)

    return CaseFacts(
        config=case.config, inputs_sha256=case.inputs_sha256, weights_sha256=case.weights_sha256,
        oracle=oracle_outputs(case.config, weights, case.inputs), variant_oracle=variant_oracle,
    )


def execute(case: Case, backend: Backend) -> Execution:
    """Prepare the backend for the case and run it twice; upstream warnings become notes."""
    with captured_upstream_messages() as upstream:
        prepare_started = time.perf_counter()
        model = backend.prepare(case)
        run_started = time.perf_counter()
        first = model.run(case.inputs)
        run_seconds = time.perf_counter() - run_started
        second = model.run(case.inputs)
    return Execution(first=first, second=second, notes=tuple(upstream),
                     prepare_seconds=run_started - prepare_started, run_seconds=run_seconds)


def run_cell(case: Case, facts: CaseFacts, backend: Backend, golden: Golden, options: RunOptions) -> CellResult:
    """Prepare, run twice, and judge one cell; never raises for a backend failure."""
    config = case.config
    cell = functools.partial(CellResult, config_id=config.id, backend=backend.name)
    if backend.is_slow(config) and not options.include_slow:
        return cell(verdict=Verdict.SLOW, reason="left out of the default run (slow); run with --all")
    limitation = backend.known_limitation(config)
    try:
        execution = execute(case, backend)
    except Exception as error:  # a backend failure is a result, not a crash of the harness
        if limitation:
            observed = first_line(error, limit=110)
            return cell(verdict=Verdict.UNSUPPORTED, reason=f"{limitation} (observed: {observed})")
        return cell(verdict=Verdict.ERROR, reason=first_line(error))
    if limitation:
        notes = (*execution.notes, f"known limitation did not reproduce: {limitation}")
        execution = dataclasses.replace(execution, notes=notes)
    tolerance = options.policy.for_cell(backend.name, config.dtype)
    return judge_cell(facts, backend.name, golden, execution, tolerance)


def live_golden(case: Case, threads: int) -> Golden:
    """A golden computed now by the reference backend, for runs without stored goldens."""
    outputs = execute(case, get_backend(REFERENCE_BACKEND)).first
    return Golden(
        config=case.config, tensors=outputs, weights_sha256=case.weights_sha256,
        inputs_sha256=case.inputs_sha256, recorded_by=f"{REFERENCE_BACKEND} (live, this run)",
        recorded_at=utc_now(), environment=environment_now(threads),
    )
