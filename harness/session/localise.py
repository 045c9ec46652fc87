"""Localising a drifting cell: the float64 reference rebuilt from the seeded model (its weights checked against
the golden's), the backend's per-layer states (harness.backends.layer_states), and the analysis
(harness.judging.localisation). Runs for DRIFT cells of `run` and `replay`, and for any cell on request
(`harness explain`). Never raises: a cell that cannot be localised says why in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import time
import warnings
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from harness.backends.base import Artifact, ArtifactBackend, Backend
from harness.backends.capture import first_line
from harness.judging.localisation import Localisation, StackStates, localise, skipped
from harness.judging.results import CellResult
from harness.model.config import RnnConfig
from harness.verdicts import Verdict

if TYPE_CHECKING:
    from harness.model.case import Case
    from harness.session.settings import Settings
    from harness.store.cache import ExportCache
    from harness.store.golden import Golden, GoldenStore

TORCH_ARTIFACTS = ("torchscript", "torch-export")


class Localising(Protocol):
    """What localising needs of the session (harness.session.core.Session), named here so that the session can
    call this module without an import cycle."""

    settings: Settings

    @property
    def cache(self) -> ExportCache | None: ...

    @property
    def store(self) -> GoldenStore: ...

    def golden(self, config: RnnConfig) -> Golden | None: ...

    def prepared(self, config: RnnConfig) -> Any: ...  # harness.session.core.PreparedCase

    def backend(self, name: str) -> Backend: ...

    def pinned(self) -> AbstractContextManager[None]: ...

    def config(self, config_id: str) -> RnnConfig: ...


def with_localisation(cell: CellResult, localisation: Localisation | None) -> CellResult:
    return cell if localisation is None else dataclasses.replace(cell, localisation=localisation)


def localise_cell(cell: CellResult, *, config: RnnConfig, backend: Backend, inputs: dict[str, np.ndarray],
                  golden_weights_sha256: str, artifact: Artifact | None = None,
                  case: Case | None = None) -> Localisation:
    """The cell's localisation against the float64 reference of the golden's model; `skipped` says why not."""
    started = time.perf_counter()
    if importlib.util.find_spec("torch") is None:
        return skipped("torch cannot be imported here: the float64 reference and one-step runs need it")
    from harness.backends.layer_states import NotLocalisable, check_localisable

    try:
        # Upstream warnings (torch.jit.load's deprecation, say) were said by the cell's own run: not again here,
        # and never as an error where warnings are errors (a test session), which differed from a worker's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if config.model and config.check == "forward":
                return dataclasses.replace(_by_submodule(cell, config=config, backend=backend, inputs=inputs,
                                                         artifact=artifact, case=case,
                                                         golden_weights_sha256=golden_weights_sha256),
                                           seconds=time.perf_counter() - started)
            check_localisable(config)
            found = _localised(cell, config=config, backend=backend, inputs=inputs, artifact=artifact, case=case,
                               golden_weights_sha256=golden_weights_sha256)
    except NotLocalisable as error:
        return skipped(str(error))
    except Exception as error:  # an analysis that fails must not turn a judged cell into a crash
        return skipped(f"could not localise: {first_line(error)}")
    return dataclasses.replace(found, seconds=time.perf_counter() - started)


def _localised(cell: CellResult, *, config: RnnConfig, backend: Backend, inputs: dict[str, np.ndarray],
               artifact: Artifact | None, case: Case | None, golden_weights_sha256: str) -> Localisation:
    from harness.backends.layer_states import NotLocalisable, reference_stack, stack_parameters, torch_states
    from harness.backends.onnx_layer_states import onnx_states
    from harness.model.case import build_case

    case = case or build_case(config)
    if case.weights_sha256 != golden_weights_sha256:
        raise NotLocalisable("the seeded model's weights are not the golden's: there is no reference to step")
    reference = reference_stack(case.module, config, inputs)
    if artifact is not None and artifact.kind == "onnx" and isinstance(backend, ArtifactBackend):
        free, local, notes = onnx_states(backend, artifact, config, inputs, reference)
    elif artifact is not None and artifact.kind in TORCH_ARTIFACTS:
        parameters = stack_parameters(_artifact_state_dict(artifact))
        free, local, notes = torch_states(parameters, config, inputs, reference)
    elif backend.uses_torch_kernels:
        free, local, notes = torch_states(stack_parameters(case.module.state_dict()), config, inputs, reference)
    else:
        raise NotLocalisable(f"{backend.name} supplies no per-layer states (neither an ONNX artifact nor torch's "
                             "kernels)")
    states = StackStates(reference=reference.h, free=free, local=local, notes=notes)
    return localise(states, tolerance=cell.tolerance, dtype=config.dtype)


def _by_submodule(cell: CellResult, *, config: RnnConfig, backend: Backend, inputs: dict[str, np.ndarray],
                  artifact: Artifact | None, case: Case | None, golden_weights_sha256: str) -> Localisation:
    """A user's model: eager's submodule outputs (forward hooks) against the ONNX artifact's values in each
    submodule's name scope; the first submodule that moves."""
    from harness.backends.layer_states import NotLocalisable
    from harness.backends.submodule_states import eager_outputs, onnx_values, scope_boundaries
    from harness.judging.localisation import noise_floor
    from harness.judging.submodules import submodule_errors, submodule_finding
    from harness.model.case import build_case

    if artifact is None or artifact.kind != "onnx" or not isinstance(backend, ArtifactBackend):
        raise NotLocalisable(f"a user's model on {backend.name}: localised by submodule on ONNX artifacts only")
    import onnx

    case = case or build_case(config)
    if case.weights_sha256 != golden_weights_sha256:
        raise NotLocalisable("the seeded model's weights are not the golden's: there is no reference to compare")
    eager, kinds = eager_outputs(dataclasses.replace(case, inputs=inputs))
    boundaries = scope_boundaries(onnx.load_from_string(artifact.data))
    names = list(dict.fromkeys(name for path in eager for name in boundaries.get(path, [])))
    values = onnx_values(backend, artifact, inputs, names)
    exported = {path: [values[name] for name in boundaries.get(path, [])] for path in eager}
    atol, rtol = noise_floor(cell.tolerance, config.dtype)
    errors = submodule_errors(eager, kinds, exported, atol=atol, rtol=rtol)
    return Localisation(submodules=errors, noise=atol, finding=submodule_finding(errors, atol))


def _artifact_state_dict(artifact: Artifact) -> dict[str, Any]:
    """A stored torch artifact's own parameters (a tampered artifact's, not the seeded module's); its gate has
    passed it before the replay loaded it."""
    import torch

    if artifact.kind == "torchscript":
        loaded = torch.jit.load(io.BytesIO(artifact.data), map_location="cpu")  # type: ignore[no-untyped-call]
        return dict(loaded.state_dict())
    program = torch.export.load(io.BytesIO(artifact.data))
    return dict(program.state_dict)


def localise_run_cell(session: Localising, config: RnnConfig, cell: CellResult, *, force: bool = False) -> CellResult:
    """A `run` cell with its localisation: DRIFT cells (or any judged cell when forced) of built-in stacks."""
    if cell.localisation is not None or not (force or cell.verdict is Verdict.DRIFT) or not cell.tensors \
            or session.settings.live_reference:
        return cell
    golden = session.golden(config)
    if golden is None:
        return cell
    from harness.session.artifacts import artifact_backend, obtain

    prepared = session.prepared(config)
    backend = session.backend(cell.backend)
    exporting = artifact_backend(backend)
    try:
        artifact = obtain(prepared.case, exporting, session.cache).artifact if exporting else None
    except Exception as error:  # it exported a moment ago; a failure now is a finding, not a crash
        return with_localisation(cell, skipped(f"could not export again: {first_line(error)}"))
    with session.pinned():
        found = localise_cell(cell, config=config, backend=backend, inputs=prepared.case.inputs, artifact=artifact,
                              case=prepared.case, golden_weights_sha256=golden.weights_sha256)
    return with_localisation(cell, found)


def localise_replayed_cell(session: Localising, config: RnnConfig, cell: CellResult, *, backend: Backend,
                           artifact: Artifact, inputs: dict[str, np.ndarray], golden_weights_sha256: str,
                           bounded: bool = False, force: bool = False) -> CellResult:
    """A `replay` cell with its localisation: the stored artifact's states against the golden model's reference
    (without torch, skipped with the reason). A torch artifact its gate runs only in a bounded worker is not
    loaded here."""
    if cell.localisation is not None or not (force or cell.verdict is Verdict.DRIFT) or not cell.tensors:
        return cell
    if bounded and artifact.kind in TORCH_ARTIFACTS:
        return with_localisation(cell, skipped("the stored artifact runs only in a bounded worker: its weights are "
                                               "not loaded in this process"))
    pinned = session.pinned() if importlib.util.find_spec("torch") else contextlib.nullcontext()
    with pinned:
        found = localise_cell(cell, config=config, backend=backend, inputs=inputs, artifact=artifact,
                              golden_weights_sha256=golden_weights_sha256)
    return with_localisation(cell, found)

