"""The `rnn_golden` fixture's life cycle: a user's own outputs (or model and inputs) checked against a
named golden, recorded when missing under update, rewritten under force, with the suite's comparison,
report lines and, when the model is given, the same inputs/weights/compute attribution."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import GoldenError, HarnessError
from harness.judging.compare import compare_outputs
from harness.judging.judge import attribute as first_changed_link
from harness.model.environment import current_environment, utc_now
from harness.model.hashing import arrays_sha256
from harness.model.tolerance import Tolerance, TolerancePolicy
from harness.reports.terminal import tensor_lines
from harness.session.execution import pinned_threads
from harness.store.user_golden import UserGolden, UserGoldenStore
from harness.verdicts import Cause

OUTPUT_NAMES = ("output", "h_n", "c_n")
UPDATE_HINT = "pytest --harness-update"
FORCE_HINT = "pytest --harness-update --harness-force-update"


@dataclass(frozen=True, kw_only=True)
class UserCheck:
    """The outcome of one check: passed, or the lines that explain the failure."""

    name: str
    passed: bool
    recorded: bool
    lines: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Produced:
    """What the user's code produced, and (when the model was given) what it was computed from."""

    tensors: dict[str, np.ndarray]
    torch_threads: int
    weights_sha256: str = ""
    inputs_sha256: str = ""


@dataclass
class FixtureGoldens:
    """Every rnn_golden check of one pytest session: golden names must be unique per directory."""

    update: bool
    force: bool
    threads: int
    owners: dict[Path, str] = field(default_factory=dict)  # manifest path -> the test that claimed it

    def claim(self, path: Path, test_id: str) -> None:
        """Two tests writing one golden would overwrite each other: an error naming both."""
        owner = self.owners.setdefault(path.resolve(), test_id)
        if owner != test_id:
            raise HarnessError(f"golden {path} is used by two tests: {owner} and {test_id}; "
                               "give each check its own name")

    def check(self, root: Path, name: str, produced: Produced, *, test_id: str,
              tolerance: Tolerance | None = None) -> UserCheck:
        """Compare produced tensors with golden `name` in root; record it when missing (update) or on force."""
        store = UserGoldenStore(root)
        manifest_path = store.manifest_path(name)
        self.claim(manifest_path, test_id)
        exists = store.exists(name)
        if (self.update and not exists) or (self.update and self.force):
            store.write(UserGolden(
                name=name, tensors=produced.tensors, recorded_at=utc_now(),
                environment=current_environment(torch_threads=produced.torch_threads),
                weights_sha256=produced.weights_sha256, inputs_sha256=produced.inputs_sha256))
            return UserCheck(name=name, passed=True, recorded=True, lines=(f"recorded golden {manifest_path}",))
        if not exists:
            return UserCheck(name=name, passed=False, recorded=False, lines=(
                f"no golden {manifest_path}; record it with {UPDATE_HINT}",))
        return judge_user_golden(store.load(name), manifest_path, produced, tolerance)


def judge_user_golden(golden: UserGolden, path: Path, produced: Produced, tolerance: Tolerance | None) -> UserCheck:
    first = next(iter(golden.tensors.values()), None)
    dtype = str(first.dtype) if first is not None else "float32"
    chosen = tolerance or TolerancePolicy().for_cell("eager", dtype if dtype in ("float32", "float64") else "float32")
    comparisons = compare_outputs(golden.tensors, produced.tensors, chosen)
    passed = all(c.passed for c in comparisons)
    verdict = "matches" if passed else "DRIFT" if not any(c.layout_problem for c in comparisons) else "SHAPE"
    cause = attribute(golden, produced) if not passed else None
    suffix = f"; cause: {cause.value}" if cause else ""
    lines = [f"golden {golden.name!r} ({path}): {verdict} (tolerance {chosen.describe()}){suffix}"]
    if not passed and golden.environment.torch_threads != produced.torch_threads:
        lines.append(f"  torch threads: {golden.environment.torch_threads} when recorded, "
                     f"{produced.torch_threads} now (thread counts change bits)")
    lines += [f"  {line}" for comparison in comparisons for line in tensor_lines(comparison)]
    if not passed:
        lines.append(f"  to accept these outputs as the new golden: {FORCE_HINT}")
    return UserCheck(name=golden.name, passed=passed, recorded=False, lines=tuple(lines))


def attribute(golden: UserGolden, produced: Produced) -> Cause | None:
    """Inputs, then weights, then compute, as for the suite; None when the model was not given."""
    if not (golden.inputs_sha256 and produced.inputs_sha256):
        return None
    return first_changed_link(produced, golden)


def produced_from_outputs(outputs: Any) -> Produced:
    """Outputs the user computed: the thread count is what torch uses now."""
    import torch

    return Produced(tensors=as_named_arrays(outputs), torch_threads=torch.get_num_threads())


def produced_from_model(model: Any, inputs: Any, threads: int) -> Produced:
    """Run the user's module on its inputs under pinned threads and no autograd; hash weights and inputs."""
    import torch

    arguments = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    tensors = tuple(torch.as_tensor(value) for value in arguments)
    with pinned_threads(threads), torch.no_grad():
        outputs = model(*tensors)
    weights = {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()}
    named_inputs = {f"input_{index}": value.detach().cpu().numpy() for index, value in enumerate(tensors)}
    return Produced(tensors=as_named_arrays(outputs), torch_threads=threads,
                    weights_sha256=arrays_sha256(weights), inputs_sha256=arrays_sha256(named_inputs))


def as_named_arrays(outputs: Any) -> dict[str, np.ndarray]:
    """A mapping of tensors, or what an RNN returns: (output, h_n) or (output, (h_n, c_n))."""
    if isinstance(outputs, Mapping):
        return {str(name): _array(value) for name, value in outputs.items()}
    if isinstance(outputs, (tuple, list)):
        flat: list[Any] = []
        for value in outputs:
            flat.extend(value if isinstance(value, (tuple, list)) else [value])
        if len(flat) > len(OUTPUT_NAMES):
            raise GoldenError(f"rnn_golden.check takes at most {len(OUTPUT_NAMES)} tensors in a tuple "
                              f"({', '.join(OUTPUT_NAMES)}); got {len(flat)}: pass a dict to name them")
        return dict(zip(OUTPUT_NAMES, map(_array, flat), strict=False))
    return {"output": _array(outputs)}


def _array(value: Any) -> np.ndarray:
    detach = getattr(value, "detach", None)
    return np.asarray(detach().cpu().numpy() if detach else value)
