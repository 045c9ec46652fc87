"""Running one backend on one case: thread pinning, preparing, running twice, and turning a backend
failure into a result (unsupported when it is a known limitation, ERROR otherwise)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from harness.backends.base import Backend, PreparedModel
from harness.backends.capture import captured_upstream_messages, first_line
from harness.judging.judge import CaseFacts, Execution, judge_cell
from harness.judging.oracle import Variant, oracle_outputs
from harness.judging.results import CellResult
from harness.model.environment import Environment, current_environment, torch_build_facts
from harness.model.tensors import to_numpy
from harness.model.tolerance import Tolerance
from harness.session.artifacts import artifact_backend, check_artifact, obtain
from harness.store.cache import ExportCache
from harness.store.golden import Golden, GoldenStore
from harness.verdicts import Verdict

if TYPE_CHECKING:  # building a case imports torch; the session imports it only to build one
    from harness.model.case import Case


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
    """The environment fingerprint, with the CUDA device when there is one."""
    import torch

    cuda = f"{torch.version.cuda} ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "none"
    build = torch_build_facts(torch.__config__.show(), torch.backends.cpu.get_cpu_capability())
    return current_environment(torch_threads=threads, cuda=cuda, torch_build=build)


def case_facts(case: Case) -> CaseFacts:
    """What judging needs about the case: hashes, and the float64 oracle on its own weights."""
    weights = {name: to_numpy(tensor) for name, tensor in case.module.state_dict().items()}

    def variant_oracle(variant: Variant) -> dict[str, np.ndarray]:
        return oracle_outputs(case.config, weights, case.inputs, variant)

    return CaseFacts(
        config=case.config, inputs_sha256=case.inputs_sha256, weights_sha256=case.weights_sha256,
        oracle=oracle_outputs(case.config, weights, case.inputs), variant_oracle=variant_oracle,
    )


def execute(case: Case, backend: Backend, cache: ExportCache | None = None) -> Execution:
    """Prepare the backend for the case and run it twice; upstream warnings become notes. An exporting
    backend's artifact comes from the cache when it holds one (with the notes its export raised)."""
    exporting = artifact_backend(backend)
    if exporting is None:
        return timed_execution(lambda: backend.prepare(case), case.inputs)
    started = time.perf_counter()
    obtained = obtain(case, exporting, cache)  # captures what its export says
    exported_seconds = time.perf_counter() - started
    execution = timed_execution(lambda: exporting.load(obtained.artifact, case.output_names), case.inputs)
    return dataclasses.replace(execution, notes=tuple(dict.fromkeys([*obtained.notes, *execution.notes])),
                               prepare_seconds=exported_seconds + execution.prepare_seconds,
                               artifact=obtained.artifact, artifact_source=obtained.source)


def timed_execution(prepare: Callable[[], PreparedModel], inputs: dict[str, np.ndarray]) -> Execution:
    """Prepare a model and run it twice on the inputs, timed; upstream warnings become notes (a run and a
    replay of a stored artifact alike)."""
    with captured_upstream_messages() as upstream:
        prepare_started = time.perf_counter()
        model = prepare()
        run_started = time.perf_counter()
        first = model.run(inputs)
        run_seconds = time.perf_counter() - run_started
        second = model.run(inputs)
    return Execution(first=first, second=second, notes=tuple(upstream),
                     prepare_seconds=run_started - prepare_started, run_seconds=run_seconds)


def judged_cell(
    case: Case, facts: CaseFacts, backend: Backend, golden: Golden, tolerance: Tolerance, *, include_slow: bool,
    cache: ExportCache | None = None, store: GoldenStore | None = None,
) -> CellResult:
    """Prepare, run twice, and judge one cell; never raises for a backend failure. With the golden's store,
    an exporting backend's stored artifact is checked against the fresh one (exporter or runtime moved)."""
    config = case.config
    cell = functools.partial(CellResult, config_id=config.id, backend=backend.name)
    if backend.is_slow(config) and not include_slow:
        return cell(verdict=Verdict.SLOW, reason="left out of the default run (slow); run with --all")
    limitation = backend.known_limitation(config)
    try:
        execution = execute(case, backend, cache)
    except Exception as error:  # a backend failure is a result, not a crash of the harness
        if limitation:
            observed = first_line(error, limit=110)
            return cell(verdict=Verdict.UNSUPPORTED, reason=f"{limitation} (observed: {observed})")
        return cell(verdict=Verdict.ERROR, reason=first_line(error))
    if limitation:
        notes = (*execution.notes, f"known limitation did not reproduce: {limitation}")
        execution = dataclasses.replace(execution, notes=notes)
    judged = judge_cell(facts, backend.name, golden, execution, tolerance)
    exporting = artifact_backend(backend)
    if store is None or exporting is None or execution.artifact is None:
        return judged
    check = check_artifact(store, golden, exporting, case.inputs, execution.artifact, execution.first)
    return dataclasses.replace(judged, artifact_check=check)
