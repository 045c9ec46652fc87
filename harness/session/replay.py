"""`harness replay`: the artifacts stored beside the goldens, run under today's runtimes and judged like
any cell. ONNX artifacts need onnxruntime alone: this module never imports torch for them.

The inputs are rebuilt from the config with NumPy (harness.model.inputs) and must hash to the golden's
inputs sha256; the weights live in the artifact, so a replay has no float64 oracle.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING

from harness.backends import DEFAULT_BACKENDS, expand_backend_names, get_backend
from harness.backends.base import Artifact, ArtifactBackend, Backend, loading_availability
from harness.backends.bounded import MemoryBoundExceeded
from harness.backends.capture import first_line
from harness.backends.deadline import CellBudgetExceeded, cell_budget
from harness.errors import BackendUnavailableError, GoldenError
from harness.judging.judge import CaseFacts, judge_cell
from harness.judging.limitations import recorded_detail
from harness.judging.results import CellResult, RunReport
from harness.judging.sensitivity import insensitive_outputs, insensitive_reason
from harness.model.config import RnnConfig
from harness.model.environment import current_environment, environment_label
from harness.model.hashing import arrays_sha256
from harness.model.inputs import probe_inputs
from harness.session.artifacts import attribute_artifact
from harness.session.localise import localise_replayed_cell
from harness.session.stored_runs import run_stored
from harness.store.golden import Golden
from harness.verdicts import Verdict

if TYPE_CHECKING:
    from harness.session.core import Session

# eager and torch.compile store no artifact (torch.compile's compiled code is not portable)
REPLAYED_BY_DEFAULT = tuple(name for name in DEFAULT_BACKENDS if name not in ("eager", "torch-compile"))


def replay(session: Session, on_cell: Callable[[CellResult], None] | None = None) -> RunReport:
    """Every selected config x artifact backend: the stored artifact loaded, run twice, and judged."""
    started = time.perf_counter()
    session.require_golden_dir()
    names = replayed_backend_names(session)
    backends, unavailable = _replayable(names, required=session.settings.backends_named)
    cells: list[CellResult] = []
    probed_files: dict[str, tuple[str, ...]] = {}  # artifact sha256 -> its outputs that ignored the probe input
    for config in session.configs:
        try:
            golden = session.golden(config)
        except GoldenError as error:  # a refused golden costs its own cells only
            refused: GoldenError | None = error
            golden = None
        else:
            refused = None
        for name in names:
            cell = (CellResult(config_id=config.id, backend=name, verdict=Verdict.UNAVAILABLE, reason=unavailable[name])
                    if name in unavailable else session.corrupt_cell(config.id, name, refused) if refused else
                    _replayed_cell(session, config, golden, backends[name], probed_files))
            cells.append(cell)
            if on_cell:
                on_cell(cell)
    environment = current_environment(torch_threads=session.settings.threads)  # CUDA unchecked: no torch import
    return RunReport(
        suite=session.suite.source, golden_dir=str(session.golden_dir),
        config_ids=tuple(config.id for config in session.configs), backends=names, cells=tuple(cells),
        unavailable=unavailable, environment=environment, replay=True,
        environment_changes=session.environment_changes_since_goldens(environment, context=False),
        environment_context=session.environment_changes_since_goldens(environment, context=True),
        leftovers=tuple(map(str, session.store.leftovers())), warnings=session.tolerance_warnings(),
        hints={"record": session.cli_command("record")},
        wall_seconds=time.perf_counter() - started,
        label=session.settings.label or environment_label(environment),
        shard="/".join(map(str, session.settings.shard)) if session.settings.shard else "",
    )


def replayed_backend_names(session: Session) -> tuple[str, ...]:
    """The named backends (families expanded), else every default backend that exports."""
    return tuple(expand_backend_names(session.settings.backends or REPLAYED_BY_DEFAULT))


def _replayable(names: tuple[str, ...], *, required: bool) -> tuple[dict[str, ArtifactBackend], dict[str, str]]:
    """The named backends that store artifacts, and why each other one cannot be replayed here."""
    backends: dict[str, ArtifactBackend] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        backend: Backend = get_backend(name)
        if not isinstance(backend, ArtifactBackend):
            unavailable[name] = "stores no artifact to replay (it exports nothing)"
            continue
        missing = [package for package in backend.loader_packages if not _importable(package)]
        if missing:
            unavailable[name] = (f"replaying its {backend.artifact_kind} artifacts needs {', '.join(missing)}, "
                                 "which cannot be imported here")
            continue
        status = loading_availability(backend)  # not what exporting needs: onnxscript, say
        if not status.available:
            unavailable[name] = status.reason
            continue
        backends[name] = backend
    if required and unavailable:
        name, reason = next(iter(unavailable.items()))
        raise BackendUnavailableError(f"backend {name} cannot be replayed here: {reason}")
    return backends, unavailable


def _replayed_cell(session: Session, config: RnnConfig, golden: Golden | None, backend: ArtifactBackend,
                   probed_files: dict[str, tuple[str, ...]]) -> CellResult:
    cell = functools.partial(CellResult, config_id=config.id, backend=backend.name)
    if golden is None:
        return cell(verdict=Verdict.MISSING, reason=session.missing_reason(config.id))
    entry = golden.artifacts.get(backend.name)
    if entry is None:
        return _without_artifact(session, config, golden, backend)
    inputs = golden.inputs()
    if arrays_sha256(inputs) != golden.inputs_sha256:
        return cell(verdict=Verdict.ERROR, reason="the inputs rebuilt here differ from those the golden was recorded "
                                                  "with (inputs sha256): NumPy's generators changed?")
    try:
        stored = session.store.verified_artifact(golden, backend.name)  # its gate refuses what it cannot prove
    except GoldenError as error:
        return session.corrupt_cell(config.id, backend.name, error)
    artifact = Artifact(kind=entry.kind, data=stored.data, producer=entry.producer)
    # A built-in RNN's outputs move with its input: probed on a second one, an artifact outputting the golden's
    # constants is caught (a user's model may ignore some input on purpose: not probed).
    # Probed once per file: whether a model ignores its input is the model's, whichever runtime runs it.
    probe = None if config.model or entry.sha256 in probed_files else probe_inputs(config, inputs)
    try:
        pinned = session.pinned() if "torch" in backend.loader_packages else nullcontext()
        with cell_budget(session.settings.cell_budget), pinned:
            execution, probed = run_stored(backend, artifact, list(golden.tensors), inputs,
                                           bounded=stored.facts.bounded, threads=session.settings.threads,
                                           probe=probe)
    except CellBudgetExceeded as error:
        return cell(verdict=Verdict.ERROR, reason=str(error))
    except (TimeoutError, MemoryBoundExceeded) as error:
        return cell(verdict=Verdict.ERROR, reason=f"{first_line(error)} ({stored.facts.unbounded_reason})")
    except Exception as error:  # a stored artifact that no longer runs is a result
        return cell(verdict=Verdict.ERROR, reason=f"the stored artifact no longer runs here: {first_line(error)}")
    facts = CaseFacts(config=config, inputs_sha256=golden.inputs_sha256, weights_sha256=golden.weights_sha256,
                      oracle=None, variant_oracle=None)
    tolerance = session.policy.for_cell(backend.name, config.dtype, config.id, calibrated=golden.calibrated_tolerance())
    execution = dataclasses.replace(execution, artifact=artifact, artifact_source="stored")
    judged = judge_cell(facts, backend.name, golden, execution, tolerance)
    check = attribute_artifact(golden, backend.name, execution.first, execution.first, same_bytes=True, diff=())
    if probed is not None:
        probed_files[entry.sha256] = insensitive_outputs(execution.first, probed)
    still = () if config.model else probed_files.get(entry.sha256, ())
    if still:
        return dataclasses.replace(judged, verdict=Verdict.ERROR, reason=insensitive_reason(still),
                                   artifact_check=check)
    return localise_replayed_cell(session, config, dataclasses.replace(judged, artifact_check=check), backend=backend,
                                  artifact=artifact, inputs=inputs, golden_weights_sha256=golden.weights_sha256,
                                  bounded=stored.facts.bounded)


def _without_artifact(session: Session, config: RnnConfig, golden: Golden, backend: ArtifactBackend) -> CellResult:
    """No artifact stored: the backend failed at record time, was left out as slow, or the golden predates them."""
    cell = functools.partial(CellResult, config_id=config.id, backend=backend.name)
    fingerprint = golden.backend_fingerprints.get(backend.name, {})
    if config.check != "forward":
        return cell(verdict=Verdict.UNSUPPORTED, reason=f"nothing stored: replay runs stored forward models, and "
                                                        f"check {config.check!r} needs autograd (`harness run`)")
    if fingerprint.get("status") == "unsupported":
        return cell(verdict=Verdict.UNSUPPORTED, reason=f"nothing stored: at record time {fingerprint['reason']}",
                    reason_detail=recorded_detail(fingerprint))
    if fingerprint.get("status") == "error":
        return cell(verdict=Verdict.ERROR, reason=f"nothing stored: at record time {fingerprint['reason']}",
                    reason_detail=recorded_detail(fingerprint))
    if backend.is_slow(config) and not fingerprint:
        return cell(verdict=Verdict.SLOW, reason="no artifact stored: left out of the record as slow (record --all)")
    return cell(verdict=Verdict.MISSING,
                reason=f"the golden stores no artifact of {backend.name} (recorded before artifacts were stored, "
                       f"or with --reference-only); record it again: {session.cli_record_hint(config.id, force=True)}")


def _importable(package: str) -> bool:
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True
