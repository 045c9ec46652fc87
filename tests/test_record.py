"""Direct tests of what a forced re-record reports (harness.session.record): change lines and fingerprint lines."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from harness.model.config import RnnConfig
from harness.model.environment import Environment
from harness.session.record import describe_changes, fingerprint_line
from harness.store.golden import Golden

ENVIRONMENT = Environment(
    packages={"torch": "2.5.0", "numpy": "2.1.0"}, python="3.12.1", platform="Linux-x86_64", machine="x86_64",
    cpu="Test CPU", cpu_flags=("avx", "avx2"), cpu_count=4, torch_threads=1, cuda="none",
)
TENSORS = {"output": np.linspace(-1, 1, 120, dtype=np.float32).reshape(3, 5, 8),
           "h_n": np.linspace(0, 1, 40, dtype=np.float32).reshape(1, 5, 8)}
BITWISE_OK = {"status": "ok", "sha256": "a" * 64, "max_ulps_to_reference": 0, "max_abs_to_reference": 0.0}
MOVED_OK = {"status": "ok", "sha256": "b" * 64, "max_ulps_to_reference": 3, "max_abs_to_reference": 1.5e-7}


def golden(**fields: Any) -> Golden:
    values: dict[str, Any] = {
        "config": RnnConfig(), "tensors": {name: array.copy() for name, array in TENSORS.items()},
        "weights_sha256": "w" * 64, "inputs_sha256": "i" * 64, "recorded_by": "eager",
        "recorded_at": "2025-01-01T00:00:00+00:00", "environment": ENVIRONMENT,
        "backend_fingerprints": {"eager": BITWISE_OK}, **fields,
    }
    return Golden(**values)


def test_identical_goldens_say_bitwise_unchanged_and_nothing_else() -> None:
    assert describe_changes(golden(), golden()) == ("reference tensors: bitwise unchanged",)


def test_a_changed_element_is_counted() -> None:
    tensors = {name: array.copy() for name, array in TENSORS.items()}
    tensors["output"][2, 4, 7] = np.nextafter(tensors["output"][2, 4, 7], np.float32(0))
    tensors["output"][0, 0, 0] += np.float32(1e-3)
    lines = describe_changes(golden(), golden(tensors=tensors))
    assert len(lines) == 1
    assert lines[0].startswith("output: 2/120 elements changed, max abs 0.001")
    assert "reference tensors: bitwise unchanged" not in lines


def test_a_changed_shape_is_a_layout_line() -> None:
    tensors = {"output": TENSORS["output"].transpose(1, 0, 2).copy(), "h_n": TENSORS["h_n"].copy()}
    lines = describe_changes(golden(), golden(tensors=tensors))
    assert lines == ("output: (3, 5, 8) float32 -> (5, 3, 8) float32",)


def test_changed_weights_and_inputs_are_named_even_when_tensors_are_unchanged() -> None:
    lines = describe_changes(golden(), golden(weights_sha256="x" * 64))
    assert lines == ("weights sha256 changed", "reference tensors: bitwise unchanged")
    assert describe_changes(golden(), golden(inputs_sha256="x" * 64))[0] == "inputs sha256 changed"


def test_fingerprint_changes_old_and_new_backends() -> None:
    new = golden(backend_fingerprints={"eager": MOVED_OK, "onnxruntime": BITWISE_OK})
    lines = describe_changes(golden(), new)
    assert lines[1:] == (
        "eager fingerprint: bitwise equal to the reference -> 3 ulps (max abs 1.5e-07) from the reference",
        "onnxruntime fingerprint: none -> bitwise equal to the reference",
    )


def test_a_fingerprint_that_became_an_error_is_reported() -> None:
    failed = {"status": "error", "reason": "export failed"}
    lines = describe_changes(golden(), golden(backend_fingerprints={"eager": failed}))
    assert "eager fingerprint: bitwise equal to the reference -> error: export failed" in lines


def test_environment_changes_bits_and_context() -> None:
    newer = dataclasses.replace(ENVIRONMENT, packages={"torch": "2.6.0", "numpy": "2.1.0"}, python="3.13.0")
    lines = describe_changes(golden(), golden(environment=newer))
    assert lines[1:] == ("environment: torch 2.5.0 -> 2.6.0", "environment: python: 3.12.1 -> 3.13.0")


@pytest.mark.parametrize(("fingerprint", "line"), [
    (BITWISE_OK, "bitwise equal to the reference"),
    (MOVED_OK, "3 ulps (max abs 1.5e-07) from the reference"),
    ({"status": "unsupported", "reason": "no LSTM projections"}, "unsupported: no LSTM projections"),
])
def test_fingerprint_line(fingerprint: dict[str, Any], line: str) -> None:
    assert fingerprint_line(fingerprint) == line


def test_fingerprints_that_moved_with_the_reference_share_one_line() -> None:
    """New weights move every backend's bytes; those still bitwise equal to the reference say so once, together."""
    moved = {**BITWISE_OK, "sha256": "f" * 64}
    new = golden(weights_sha256="x" * 64, backend_fingerprints={"eager": moved, "onnxruntime": MOVED_OK})
    old = golden(backend_fingerprints={"eager": BITWISE_OK, "onnxruntime": BITWISE_OK})
    lines = describe_changes(old, new)
    assert "fingerprints that moved with the reference (eager): as they were to it" in lines
    assert not any(line.startswith("eager fingerprint:") for line in lines)
    assert "onnxruntime fingerprint: bitwise equal to the reference -> 3 ulps (max abs 1.5e-07) from the reference" \
        in lines
