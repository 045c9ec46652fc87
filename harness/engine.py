"""The library core: run configs on backends against the golden store, and record goldens."""

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
from harness.case import Case, build_case, tensor_axes
from harness.compare import TensorComparison, TensorStatus, compare_outputs, oracle_distance
from harness.config import RnnConfig
from harness.environment import Environment, current_environment, environment_differences, utc_now
from harness.errors import BackendUnavailableError, GoldenError
from harness.golden import Golden, GoldenStore
from harness.layout import diagnose_layout
from harness.oracle import oracle_outputs
from harness.results import Cause, CellResult, RunReport, Verdict
from harness.tolerance import BITWISE, TolerancePolicy

DEFAULT_THREADS = 1  # bitwise results depend on the intra-op thread count: pin it (FINDINGS.md)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    backends: tuple[str, ...]
    include_slow: bool = False
    policy: TolerancePolicy = field(default_factory=TolerancePolicy)
    threads: int = DEFAULT_THREADS
    require_available: bool = False  # True when the user named the backends: unavailable is then an error


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
    """Every config on every available backend, each compared to its golden."""
    started = time.perf_counter()
    goldens = {config.id: load_matching_golden(store, config) for config in configs}
    backends, unavailable = resolve_backends(expand_backend_names(options.backends))
    if unavailable and options.require_available:
        name, reason = next(iter(unavailable.items()))
        raise BackendUnavailableError(f"backend {name} is unavailable here: {reason}")
    environment = environment_now(options.threads)
    cells: list[CellResult] = []
    with pinned_threads(options.threads):
        for config in configs:
            case = build_case(config)
            oracle = case_oracle(case)
            for backend in backends:
                if backend.name in unavailable:
                    reason = unavailable[backend.name]
                    cell = CellResult(config_id=config.id, backend=backend.name, verdict=Verdict.UNAVAILABLE,
                                      reason=reason)
                else:
                    cell = run_cell(case, backend, goldens[config.id], options, oracle)
                cells.append(cell)
                if on_cell:
                    on_cell(cell)
    changes = {
        config_id: tuple(environment_differences(golden.environment, environment))
        for config_id, golden in goldens.items()
    }
    return RunReport(
        suite=suite_source, golden_dir=str(store.root), config_ids=tuple(goldens),
        backends=tuple(backend.name for backend in backends),
        cells=tuple(cells), unavailable=unavailable, environment=environment,
        environment_changes={key: value for key, value in changes.items() if value},
        wall_seconds=time.perf_counter() - started,
    )


def resolve_backends(names: Sequence[str]) -> tuple[list[Backend], dict[str, str]]:
    """The named backends, and the reason for each one that cannot run here."""
    backends = [get_backend(name) for name in names]
    statuses = {backend.name: backend.availability() for backend in backends}
    return backends, {name: status.reason for name, status in statuses.items() if not status.available}


def load_matching_golden(store: GoldenStore, config: RnnConfig) -> Golden:
    golden = store.load(config.id)
    if golden.config.content_hash != config.content_hash:
        raise GoldenError(
            f"{store.manifest_path(config.id)}: recorded for a different config than the suite's "
            f"{config.id!r} (content hash {golden.config.content_hash[:12]} vs {config.content_hash[:12]})"
        )
    return golden


def case_oracle(case: Case) -> dict[str, np.ndarray]:
    """The float64 oracle's outputs for the case's own weights and inputs."""
    weights = {name: tensor.detach().cpu().numpy() for name, tensor in case.module.state_dict().items()}
    return oracle_outputs(case.config, weights, case.inputs)


def run_cell(
    case: Case, backend: Backend, golden: Golden, options: RunOptions, oracle: dict[str, np.ndarray] | None = None
) -> CellResult:
    """Prepare, run twice, and judge one cell; never raises for a backend failure."""
    config = case.config
    cell = functools.partial(CellResult, config_id=config.id, backend=backend.name)
    if backend.is_slow(config) and not options.include_slow:
        return cell(verdict=Verdict.SLOW, reason="left out of the default run (slow); run with --all")
    limitation = backend.known_limitation(config)
    try:
        with captured_upstream_messages() as upstream:
            prepare_started = time.perf_counter()
            model = backend.prepare(case)
            run_started = time.perf_counter()
            first = model.run(case.inputs)
            run_seconds = time.perf_counter() - run_started
            second = model.run(case.inputs)
    except Exception as error:  # a backend failure is a result, not a crash of the harness
        if limitation:
            observed = first_line(error, limit=110)
            return cell(verdict=Verdict.UNSUPPORTED, reason=f"{limitation} (observed: {observed})")
        return cell(verdict=Verdict.ERROR, reason=first_line(error))
    tolerance = options.policy.for_cell(backend.name, config.dtype)
    tensors = diagnose(compare_outputs(golden.tensors, first, tolerance), golden.tensors, first, config)
    repeat = compare_outputs(first, second, BITWISE)
    notes = tuple(upstream) + ((f"known limitation did not reproduce: {limitation}",) if limitation else ())
    verdict = judge(tensors, repeat)
    return cell(
        verdict=verdict, tolerance=tolerance, tensors=tensors,
        repeat=repeat if any(not t.passed for t in repeat) else (),
        cause=attribute(case, golden) if verdict is Verdict.DRIFT else None,
        oracle=oracle_distance(first, oracle) if oracle else None,
        golden_oracle=oracle_distance(golden.tensors, oracle) if oracle else None,
        notes=notes, prepare_seconds=run_started - prepare_started, run_seconds=run_seconds,
    )


def diagnose(
    tensors: tuple[TensorComparison, ...], expected: dict[str, np.ndarray], actual: dict[str, np.ndarray],
    config: RnnConfig,
) -> tuple[TensorComparison, ...]:
    """Attach a layout diagnosis to every SHAPE tensor."""
    axes = tensor_axes(config)
    return tuple(
        dataclasses.replace(tensor, diagnosis=diagnose_layout(
            tensor.name, expected[tensor.name], actual[tensor.name], axes.get(tensor.name, ())) or "")
        if tensor.status is TensorStatus.SHAPE else tensor
        for tensor in tensors
    )


def judge(tensors: Sequence[TensorComparison], repeat: Sequence[TensorComparison]) -> Verdict:
    if any(t.layout_problem for t in tensors):
        return Verdict.SHAPE
    if any(not t.passed for t in repeat):
        return Verdict.NONDETERMINISTIC
    if any(t.status is TensorStatus.DRIFT for t in tensors):
        return Verdict.DRIFT
    if all(t.status is TensorStatus.IDENTICAL for t in tensors):
        return Verdict.IDENTICAL
    return Verdict.CLOSE


def attribute(case: Case, golden: Golden) -> Cause:
    """The first link that differs from the golden's record: inputs, then weights, then compute."""
    if case.inputs_sha256 != golden.inputs_sha256:
        return Cause.INPUTS
    if case.weights_sha256 != golden.weights_sha256:
        return Cause.WEIGHTS
    return Cause.COMPUTE


@dataclass(frozen=True, kw_only=True)
class RecordResult:
    config_id: str
    path: str
    replaced: bool
    changes: tuple[str, ...] = ()


def record_golden(
    config: RnnConfig, store: GoldenStore, *, force: bool, threads: int = DEFAULT_THREADS
) -> RecordResult:
    """Compute the golden of config on the reference backend (eager CPU) and write it."""
    previous = _previous_golden(store, config, force)
    with pinned_threads(threads):
        case = build_case(config)
        with captured_upstream_messages():
            outputs = get_backend(REFERENCE_BACKEND).prepare(case).run(case.inputs)
        environment = environment_now(threads)
    golden = Golden(
        config=config, tensors=outputs, weights_sha256=case.weights_sha256, inputs_sha256=case.inputs_sha256,
        recorded_by=REFERENCE_BACKEND, recorded_at=utc_now(), environment=environment,
    )
    path = store.write(golden, force=force)
    changes = describe_changes(previous, golden) if previous else ()
    return RecordResult(config_id=config.id, path=str(path), replaced=previous is not None, changes=changes)


def _previous_golden(store: GoldenStore, config: RnnConfig, force: bool) -> Golden | None:
    if not store.exists(config.id):
        return None
    if not force:
        raise GoldenError(f"{store.manifest_path(config.id)}: golden exists; pass --force to overwrite it")
    try:
        return store.load(config.id)
    except GoldenError:
        return None  # a corrupt golden is being replaced: nothing to diff against


def describe_changes(old: Golden, new: Golden) -> tuple[str, ...]:
    """What a forced re-record changed, one readable line per difference."""
    lines = []
    if old.inputs_sha256 != new.inputs_sha256:
        lines.append("inputs sha256 changed")
    if old.weights_sha256 != new.weights_sha256:
        lines.append("weights sha256 changed")
    for tensor in compare_outputs(old.tensors, new.tensors, BITWISE):
        if tensor.status is TensorStatus.IDENTICAL:
            continue
        if tensor.layout_problem:
            lines.append(f"{tensor.name}: {tensor.expected_shape} {tensor.expected_dtype} -> "
                         f"{tensor.actual_shape} {tensor.actual_dtype}")
        else:
            lines.append(f"{tensor.name}: {tensor.mismatched}/{tensor.total} elements changed, "
                         f"max abs {tensor.max_abs:.3g}, {tensor.max_ulps} ulps")
    lines += [f"environment: {line}" for line in environment_differences(old.environment, new.environment)]
    return tuple(lines) or ("tensors bitwise unchanged",)
