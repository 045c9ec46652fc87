"""Running one backend on one case: thread pinning, preparing, running twice, and turning a backend
failure into a result (unsupported when it is a known limitation, ERROR otherwise)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from harness.backends.base import Backend, NoAutogradError, PreparedModel, autograd_problem, check_verb
from harness.backends.capture import first_line, full_message
from harness.judging.compare import FLOAT64_EAGER, compare_outputs
from harness.judging.judge import CaseFacts, Execution, judge_cell
from harness.judging.limitations import failed_again, limitation, recorded_failure
from harness.judging.oracle import Variant, oracle_outputs
from harness.judging.results import CellResult, LimitationStatus
from harness.model.environment import Environment, current_environment, torch_build_facts
from harness.model.tensors import to_numpy
from harness.model.tolerance import Tolerance
from harness.session.artifacts import artifact_backend, check_artifact, obtain
from harness.session.stored_runs import timed_execution
from harness.store.cache import ExportCache
from harness.store.golden import Golden, GoldenStore
from harness.verdicts import ArtifactCause, Verdict

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
    """What judging needs about the case: hashes, and the float64 oracle on its own weights. The oracle is
    the NumPy one for a bare RNN's forward pass; for a user's model, gradients and training there is none,
    and the same check run by eager torch in float64 is the reference distance instead."""
    facts = CaseFacts(config=case.config, inputs_sha256=case.inputs_sha256, weights_sha256=case.weights_sha256,
                      oracle=None, variant_oracle=None)
    if case.config.plain_rnn and case.config.check == "forward":
        weights = {name: to_numpy(tensor) for name, tensor in case.module.state_dict().items()}

        def variant_oracle(variant: Variant) -> dict[str, np.ndarray]:
            return oracle_outputs(case.config, weights, case.inputs, variant)

        return dataclasses.replace(facts, oracle=oracle_outputs(case.config, weights, case.inputs),
                                   variant_oracle=variant_oracle)
    return dataclasses.replace(facts, oracle=float64_eager(case), reference=FLOAT64_EAGER)


def float64_eager(case: Case) -> dict[str, np.ndarray] | None:
    """The case's check run by eager torch on a float64 copy of its module and inputs (None when the model
    cannot run in float64)."""
    import copy

    import torch

    from harness.backends.workloads import run_check
    from harness.backends.wrappers import flat_module_for

    config = dataclasses.replace(case.config, dtype="float64")
    module = copy.deepcopy(flat_module_for(case)).to(torch.float64)
    inputs = {name: array.astype(np.float64) if array.dtype.kind == "f" or array.dtype.name == "bfloat16"
              else array for name, array in case.inputs.items()}
    try:
        with warnings.catch_warnings():  # what the model says is said by its cells' own runs
            warnings.simplefilter("ignore")
            return run_check(config, module, inputs, case.forward_names)
    except Exception:  # a model that cannot run in float64 simply has no reference distance
        return None


def execute(case: Case, backend: Backend, cache: ExportCache | None = None) -> Execution:
    """Prepare the backend for the case and run it twice; upstream warnings become notes. An exporting
    backend's artifact comes from the cache when it holds one (with the notes its export raised)."""
    problem = autograd_problem(backend, case.config.check)
    if problem:
        raise NoAutogradError(problem)
    exporting = artifact_backend(backend)
    if exporting is None:
        return timed_execution(lambda: for_the_check(backend.prepare(case), case), case.inputs)
    started = time.perf_counter()
    obtained = obtain(case, exporting, cache)  # captures what its export says
    exported_seconds = time.perf_counter() - started
    execution = timed_execution(
        lambda: for_the_check(exporting.load(obtained.artifact, case.forward_names), case), case.inputs)
    # Stored artifacts (and their replay) are forward models checked on forward outputs.
    stored = obtained.artifact if case.config.check == "forward" else None
    return dataclasses.replace(execution, notes=tuple(dict.fromkeys([*obtained.notes, *execution.notes])),
                               prepare_seconds=exported_seconds + execution.prepare_seconds,
                               artifact=stored, artifact_source=obtained.source)


def for_the_check(model: PreparedModel, case: Case) -> PreparedModel:
    """The prepared model, running the config's check: a torch module (eager, TorchScript, torch.export's)
    is run through harness.backends.workloads (forward, gradients or training); a model that already runs
    the check (torch.compile's worker) or a forward-only one is returned as it is."""
    if getattr(model, "runs_check", False):
        return model
    from harness.backends.eager import TorchModel

    if isinstance(model, TorchModel):
        return dataclasses.replace(model, config=case.config, output_names=tuple(case.forward_names))
    if case.config.check != "forward":
        raise NoAutogradError(f"{type(model).__name__} is not a torch module: no autograd to "
                              f"{check_verb(case.config.check)}")
    return model


def baked_shape(case: Case, backend: Backend, golden: Golden, tolerance: Tolerance, *, observed: str,
                cache: ExportCache | None = None) -> str:
    """For a case exported at another shape than it runs at, whose run failed: "shape baked in at export"
    naming the dimension(s), when exporting at the run's own shape computes the golden (and so the failure
    is the shape's); "" otherwise. Each dimension that differs is tried alone to say which one was baked."""
    config = case.config
    run_shape, export_shape = (config.seq_len, config.batch), config.export_shape

    def computes_golden(shape: tuple[int, int]) -> bool:
        from harness.model.inputs import build_inputs

        control = dataclasses.replace(case, export_inputs=None if shape == run_shape else
                                      build_inputs(config, shape=shape))
        try:
            outputs = execute(control, backend, cache).first  # its key holds the examples: its own entry
        except Exception:  # the control failing too means the shape is not the (only) cause
            return False
        return all(tensor.passed for tensor in compare_outputs(golden.tensors, outputs, tolerance))

    if not computes_golden(run_shape):
        return ""
    labels = ("sequence length", "batch")
    baked = []
    for axis, label in enumerate(labels):
        if run_shape[axis] == export_shape[axis]:
            continue
        alone = tuple(export_shape[i] if i == axis else run_shape[i] for i in range(2))
        if not computes_golden(alone):  # type: ignore[arg-type]
            baked.append(f"{label} {export_shape[axis]}")
    named = " and ".join(baked) or "the combined shape"
    return (f"shape baked in at export: {backend.name} exported at seq {export_shape[0]} x batch {export_shape[1]} "
            f"keeps {named}, and fails at seq {run_shape[0]} x batch {run_shape[1]} ({observed}); exported at "
            "the run's own shape it computes the golden")


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
    known = backend.known_limitation(config)
    recorded = recorded_failure(config, golden, backend.name)
    try:
        execution = execute(case, backend, cache)
    except NoAutogradError as error:
        return cell(verdict=Verdict.UNSUPPORTED, reason=str(error))
    except Exception as error:  # a backend failure is a result, not a crash of the harness
        if recorded is not None and not known:  # a user's model this backend could not take at record time
            return failed_again(config.id, backend.name, recorded, observed=first_line(error),
                                detail=full_message(error))
        observed = first_line(error, limit=110 if known else 160)
        baked = (baked_shape(case, backend, golden, tolerance, observed=observed, cache=cache)
                 if config.reshaped_at_export else "")
        detail = "" if baked else full_message(error)
        if known:
            return cell(verdict=Verdict.UNSUPPORTED, reason=f"{known} (observed: {baked or observed})",
                        reason_detail=detail)
        return cell(verdict=Verdict.SHAPE if baked else Verdict.ERROR, reason=baked or first_line(error),
                    reason_detail=detail)
    if known:
        notes = (*execution.notes, f"known limitation did not reproduce: {known}")
        execution = dataclasses.replace(execution, notes=notes)
    judged = judge_cell(facts, backend.name, golden, execution, tolerance)
    if config.relations:
        from harness.session.relations import with_relations

        recorded_relations = golden.backend_fingerprints.get(backend.name, {}).get("relations")
        judged = with_relations(judged, case, backend, tolerance, recorded_relations)
    if recorded is not None:  # recorded as unable to take the model, it runs now: judged, and said so
        judged = dataclasses.replace(judged, limitation=limitation(LimitationStatus.RESOLVED, recorded))
    if judged.verdict in (Verdict.SHAPE, Verdict.DRIFT) and config.reshaped_at_export:
        worst = max(judged.tensors, key=lambda tensor: (tensor.layout_problem, tensor.max_abs), default=None)
        observed = (f"{worst.name}: {worst.actual_shape} instead of {worst.expected_shape}" if worst and
                    worst.layout_problem else f"{worst.name} off by {worst.max_abs:.2g}" if worst else "")
        baked = baked_shape(case, backend, golden, tolerance, observed=observed, cache=cache)
        if baked and known:  # the known limitation did reproduce, as a wrong result rather than an error
            return cell(verdict=Verdict.UNSUPPORTED, reason=f"{known} (observed: {baked})")
        if baked:
            judged = dataclasses.replace(judged, verdict=Verdict.SHAPE, reason=baked)
    exporting = artifact_backend(backend)
    if store is None or exporting is None or execution.artifact is None:
        return judged
    if (case.weights_sha256, case.inputs_sha256) != (golden.weights_sha256, golden.inputs_sha256):
        return judged  # a fresh export of other weights or inputs says nothing of the exporter or the runtime
    check = check_artifact(store, golden, exporting, case.inputs, execution.artifact, execution.first)
    if check is not None and check.cause is ArtifactCause.FORGED:  # the golden's artifact is not the model's
        return dataclasses.replace(judged, verdict=Verdict.ERROR, reason=check.summary, artifact_check=check)
    return dataclasses.replace(judged, artifact_check=check)
