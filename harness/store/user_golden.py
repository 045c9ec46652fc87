"""Goldens for a user's own seeded module (the `rnn_golden` pytest fixture): named tensors checked
against `<golden dir>/<name>.json` + `.npz`, with the same format rules as the suite's goldens
(atomic writes, sha256 per tensor, no pickle) and the same comparison and report lines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.judging.compare import compare_outputs
from harness.model.environment import current_environment, utc_now
from harness.errors import GoldenError
from harness.store.golden import read_tensors, tensor_entries, verify_tensors, write_golden_files
from harness.reports.terminal import tensor_lines
from harness.judging.tolerance import Tolerance, TolerancePolicy

SCHEMA = "harness.user-golden/1"
OUTPUT_NAMES = ("output", "h_n", "c_n")


@dataclass(frozen=True, kw_only=True)
class UserCheck:
    """The outcome of one check: passed, or the lines that explain the failure."""

    name: str
    passed: bool
    recorded: bool
    lines: tuple[str, ...]


def as_named_arrays(outputs: Any) -> dict[str, np.ndarray]:
    """A mapping of tensors, or what an RNN returns: (output, h_n) or (output, (h_n, c_n))."""
    if isinstance(outputs, Mapping):
        return {str(name): _array(value) for name, value in outputs.items()}
    if isinstance(outputs, (tuple, list)):
        flat: list[Any] = []
        for value in outputs:
            flat.extend(value if isinstance(value, (tuple, list)) else [value])
        return dict(zip(OUTPUT_NAMES, map(_array, flat), strict=False))
    return {"output": _array(outputs)}


def _array(value: Any) -> np.ndarray:
    detach = getattr(value, "detach", None)
    return np.asarray(detach().cpu().numpy() if detach else value)


def check_user_golden(
    root: Path, name: str, outputs: Any, *, update: bool, force: bool, tolerance: Tolerance | None = None
) -> UserCheck:
    """Compare outputs to the golden called name; record it when missing (update) or on force."""
    arrays = as_named_arrays(outputs)
    manifest_path = root / f"{name}.json"
    if force or (update and not manifest_path.exists()):
        _write(root, name, arrays)
        return UserCheck(name=name, passed=True, recorded=True, lines=(f"recorded golden {manifest_path}",))
    if not manifest_path.exists():
        return UserCheck(name=name, passed=False, recorded=False, lines=(
            f"no golden {manifest_path}; record it with pytest --harness-update",))
    expected = _load(root, name)
    first = next(iter(expected.values()))
    chosen = tolerance or TolerancePolicy().for_cell("eager", str(first.dtype))
    comparisons = compare_outputs(expected, arrays, chosen)
    passed = all(c.passed for c in comparisons)
    verdict = "matches" if passed else "DRIFT" if not any(c.layout_problem for c in comparisons) else "SHAPE"
    lines = [f"golden {name!r} ({manifest_path}): {verdict} (tolerance {chosen.describe()})"]
    lines += [f"  {line}" for comparison in comparisons for line in tensor_lines(comparison)]
    if not passed:
        lines.append("  to accept these outputs as the new golden: pytest --harness-update --harness-force-update")
    return UserCheck(name=name, passed=passed, recorded=False, lines=tuple(lines))


def _write(root: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    def manifest(tensors_file: str) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "name": name, "tensors_file": tensors_file, "tensors": tensor_entries(arrays),
            "recorded_at": utc_now(), "environment": current_environment(torch_threads=0).to_dict(),
        }

    write_golden_files(root, name, arrays, manifest)


def _load(root: Path, name: str) -> dict[str, np.ndarray]:
    path = root / f"{name}.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        tensors_path = root / manifest["tensors_file"]
        expected = manifest["tensors"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise GoldenError(f"{path}: corrupt golden manifest: {error}") from None
    tensors = read_tensors(tensors_path)
    verify_tensors(tensors_path, tensors, expected)
    return tensors
