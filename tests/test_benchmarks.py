"""Speed as a feature: pytest-benchmark timings of each backend's steady-state run and of preparation.

Compare within a group (`--benchmark-group-by=group`): the ratios between backends are the result.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends import get_backend
from harness.backends.capture import captured_upstream_messages
from harness.model.case import build_case
from harness.model.config import RnnConfig

BACKENDS = ["eager", "torchscript-script", "torchscript-trace", "onnxruntime-legacy", "onnxruntime-dynamo"]
CONFIGS = {
    "reference": RnnConfig(),
    "lstm-h128-t32b8": RnnConfig(cell="lstm", hidden_size=128, input="random", seq_len=32, batch=8),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_run_speed(benchmark: Any, backend: str, config_name: str) -> None:
    case = build_case(CONFIGS[config_name])
    with captured_upstream_messages():
        model = get_backend(backend).prepare(case)
    benchmark.group = f"run {config_name}"
    outputs = benchmark.pedantic(model.run, args=(case.inputs,), rounds=30, iterations=5, warmup_rounds=2)
    assert list(outputs) == case.output_names


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepare_speed(benchmark: Any, backend: str) -> None:
    case = build_case(CONFIGS["reference"])
    selected = get_backend(backend)

    def prepare() -> object:
        with captured_upstream_messages():
            return selected.prepare(case)

    benchmark.group = "prepare reference"
    rounds = 2 if backend == "onnxruntime-dynamo" else 5
    assert benchmark.pedantic(prepare, rounds=rounds, iterations=1) is not None
