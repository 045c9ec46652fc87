"""Judging one cell: outputs in, a CellResult out. Pure apart from the oracle variants it evaluates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from harness.backends.base import Artifact
from harness.judging.compare import ORACLE, TensorComparison, compare_outputs, oracle_distance, ulp_distance
from harness.judging.layout import diagnose_layout
from harness.judging.oracle import Variant
from harness.judging.results import CellResult, PastComparison, WeightsChange
from harness.judging.rnn_checks import (
    argmax_changes,
    check_invariants,
    growth_line,
    named_pitfall,
    state_error_line,
    step_errors,
    valid_steps_mask,
)
from harness.model.axes import tensor_axes
from harness.model.config import RnnConfig
from harness.model.hashing import arrays_sha256
from harness.model.tolerance import BITWISE, Tolerance
from harness.store.golden import Golden
from harness.verdicts import Cause, PastStatus, TensorStatus, Verdict

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True, kw_only=True)
class Execution:
    """What running one prepared backend produced: two runs, upstream notes, timings."""

    first: Outputs
    second: Outputs
    notes: tuple[str, ...]
    prepare_seconds: float
    run_seconds: float
    artifact: Artifact | None = None  # what an exporting backend ran (fresh, cached or stored)
    artifact_source: str = ""


@dataclass(frozen=True, kw_only=True)
class CaseFacts:
    """What this run knows about the case, independent of the backend."""

    config: RnnConfig
    inputs_sha256: str
    weights_sha256: str
    oracle: Outputs | None  # None where the weights are out of reach (a replay of a stored artifact)
    variant_oracle: Callable[[Variant], Outputs] | None
    reference: str = ORACLE  # what `oracle` is: the NumPy oracle, or float64 eager torch where none applies
    parameters_sha256: dict[str, str] = field(default_factory=dict)  # each parameter's; empty where unknown (replay)


def judge_cell(
    facts: CaseFacts, backend: str, golden: Golden, execution: Execution, tolerance: Tolerance
) -> CellResult:
    config, first = facts.config, execution.first
    expected, actual = valid_steps_only(config, golden.tensors), valid_steps_only(config, first)
    tensors = diagnose(compare_outputs(expected, actual, tolerance), golden.tensors, first, config)
    repeat = compare_outputs(first, execution.second, BITWISE)
    violations = check_invariants(config, first)
    verdict = verdict_of(tensors, repeat, violations)
    return CellResult(
        config_id=config.id, backend=backend, verdict=verdict, tolerance=tolerance, tensors=tensors,
        repeat=repeat if any(not t.passed for t in repeat) else (),
        cause=attribute(facts, golden) if verdict in (Verdict.DRIFT, Verdict.SHAPE) else None,
        oracle=oracle_distance(first, facts.oracle, facts.reference) if facts.oracle is not None else None,
        # A user's model has no oracle: its float64 reference is built from today's code, so it cannot say
        # whether the golden or this result moved when that code changed. Only this result's distance is shown.
        golden_oracle=(oracle_distance(golden.tensors, facts.oracle, facts.reference)
                       if facts.oracle is not None and not config.model else None),
        invariant_violations=violations,
        argmax_changed=_argmax_changed(config, golden.tensors, first),
        analysis=(analysis_lines(facts, golden.tensors, first, tolerance) if verdict is Verdict.DRIFT else
                  training_lines(config, first, execution.second, BITWISE, "two runs")
                  if verdict is Verdict.NONDETERMINISTIC else ()),
        past=compare_with_past(backend, golden, first),
        outputs_sha256=arrays_sha256(first),
        artifact_source=execution.artifact_source,
        notes=execution.notes, prepare_seconds=execution.prepare_seconds, run_seconds=execution.run_seconds,
        weights_changed=changed_weights(facts, golden),
    )


def diagnose(
    tensors: tuple[TensorComparison, ...], expected: Outputs, actual: Outputs, config: RnnConfig
) -> tuple[TensorComparison, ...]:
    """Attach a layout diagnosis to every SHAPE tensor."""
    axes = tensor_axes(config)  # none for gradients, training and users' models: nothing to diagnose by
    return tuple(
        dataclasses.replace(tensor, diagnosis=diagnose_layout(
            tensor.name, expected[tensor.name], actual[tensor.name], axes.get(tensor.name, ())) or "")
        if tensor.status is TensorStatus.SHAPE and axes else tensor
        for tensor in tensors
    )


def verdict_of(
    tensors: Sequence[TensorComparison], repeat: Sequence[TensorComparison], violations: Sequence[str]
) -> Verdict:
    if any(t.layout_problem for t in tensors):
        return Verdict.SHAPE
    if any(not t.passed for t in repeat):  # before invariants: noise breaks those too
        return Verdict.NONDETERMINISTIC
    if violations:
        return Verdict.INVARIANT
    if any(t.status is TensorStatus.DRIFT for t in tensors):
        return Verdict.DRIFT
    if all(t.status is TensorStatus.IDENTICAL for t in tensors):
        return Verdict.IDENTICAL
    return Verdict.CLOSE


class Hashed(Protocol):
    """What attribution reads: the sha256 of the inputs and of the weights (a case now, or a golden)."""

    @property
    def inputs_sha256(self) -> str: ...

    @property
    def weights_sha256(self) -> str: ...


def attribute(now: Hashed, recorded: Hashed) -> Cause:
    """The first link that differs from the golden's record: inputs, then weights, then compute."""
    if now.inputs_sha256 != recorded.inputs_sha256:
        return Cause.INPUTS
    if now.weights_sha256 != recorded.weights_sha256:
        return Cause.WEIGHTS
    return Cause.COMPUTE


class Weighed(Protocol):
    """What naming changed weights reads: the weights' sha256, and each parameter's (a case now, or a golden)."""

    @property
    def weights_sha256(self) -> str: ...

    @property
    def parameters_sha256(self) -> dict[str, str]: ...


def changed_weights(now: Weighed, recorded: Weighed) -> WeightsChange | None:
    """None when the weights are the golden's (weights_sha256 decides); else the parameters whose sha256 differs or
    that only one side has. Without per-parameter hashes on either side (a golden before harness.golden/3) none is
    named; with them on both and none differing, only the parameters' order changed."""
    if now.weights_sha256 == recorded.weights_sha256:
        return None
    before, after = recorded.parameters_sha256, now.parameters_sha256
    if not before or not after:
        return WeightsChange(named=False)
    names = dict.fromkeys([*after, *before])
    return WeightsChange(parameters=tuple(name for name in names if after.get(name) != before.get(name)))


def valid_steps_only(config: RnnConfig, outputs: Outputs) -> Outputs:
    """Packed sequences are compared on their valid steps only: the padded steps of "output" set to zero (that
    they must come back zero is an invariant, checked on the untouched outputs)."""
    mask = valid_steps_mask(config)
    output = outputs.get("output")
    if mask is None or output is None or output.shape[:2] != mask.shape:
        return outputs
    return {**outputs, "output": np.where(mask[:, :, None], output, np.zeros((), dtype=output.dtype))}


def training_lines(config: RnnConfig, expected: Outputs, actual: Outputs, tolerance: Tolerance,
                   what: str) -> tuple[str, ...]:
    """For a training run: the first step at which the loss curves differ (bitwise, and beyond tolerance)
    and how far apart they get."""
    if config.check != "train" or not _same_shape(expected, actual, "loss"):
        return ()
    before, after = expected["loss"].astype(np.float64), actual["loss"].astype(np.float64)
    gap = np.abs(after - before)
    differing = np.flatnonzero(expected["loss"] != actual["loss"])
    if not differing.size:
        return (f"loss curves ({what}): identical over all {len(before)} steps",)
    beyond = np.flatnonzero(gap > tolerance.atol + tolerance.rtol * np.abs(before))
    worst = int(np.argmax(gap))
    where = f", beyond tolerance from step {beyond[0] + 1}" if beyond.size else ", within tolerance throughout"
    return (f"loss curves ({what}): first diverge at step {differing[0] + 1} of {len(before)} "
            f"(|d loss| {gap[differing[0]]:.1e}){where}; largest |d loss| {gap[worst]:.1e} at step {worst + 1}",)


def analysis_lines(facts: CaseFacts, expected: Outputs, actual: Outputs, tolerance: Tolerance = BITWISE
                   ) -> tuple[str, ...]:
    """For DRIFT: error along the sequence, per layer/direction, and any named exporter pitfall (a bare RNN's
    forward pass); where the loss curve of a training run leaves the golden's."""
    config = facts.config
    if not config.plain_rnn or config.check != "forward":
        return training_lines(config, expected, actual, tolerance, "golden vs this run")
    lines = []
    if _same_shape(expected, actual, "output"):
        lines.append(growth_line(step_errors(config, expected["output"], actual["output"])))
    for name in ("h_n", "c_n"):
        if _same_shape(expected, actual, name):
            lines.append(state_error_line(config, name, expected[name], actual[name]))
    pitfall = named_pitfall(config, actual, facts.variant_oracle) if facts.variant_oracle else None
    if pitfall:
        lines.append(pitfall)
    return tuple(lines)


def compare_with_past(backend: str, golden: Golden, actual: Outputs) -> PastComparison:
    """This backend against its own fingerprint in the golden: unchanged, moved, or not recorded."""
    fingerprint = golden.backend_fingerprints.get(backend)
    if not fingerprint or fingerprint.get("status") != "ok":
        return PastComparison(status=PastStatus.NEW, summary="no fingerprint of this backend in the golden")
    if arrays_sha256(actual) == fingerprint["sha256"]:
        return PastComparison(status=PastStatus.UNCHANGED, summary="bitwise unchanged since the golden was recorded")
    past = golden.backend_tensors.get(backend, golden.tensors)
    if any(not _same_shape(past, actual, name) for name in past):
        return PastComparison(status=PastStatus.MOVED, summary="moved: shapes changed since the golden was recorded")
    ulps = max(int(ulp_distance(past[name], actual[name]).max(initial=0)) for name in past)
    max_abs = max(float(np.abs(actual[name].astype(np.float64) - past[name]).max(initial=0.0)) for name in past)
    return PastComparison(status=PastStatus.MOVED, max_ulps=ulps, max_abs=max_abs,
                          summary=f"moved by {ulps} ulps (max abs {max_abs:.1e}) since the golden was recorded")


def _argmax_changed(config: RnnConfig, expected: Outputs, actual: Outputs) -> int | None:
    return argmax_changes(config, expected["output"], actual["output"]) if _same_shape(
        expected, actual, "output") else None


def _same_shape(expected: Outputs, actual: Outputs, name: str) -> bool:
    return (name in expected and name in actual and expected[name].shape == actual[name].shape
            and expected[name].dtype == actual[name].dtype)
