"""Every backend on a spread of configs, against eager CPU computed here (not the committed goldens)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backends import backend_names, get_backend
from harness.backends.capture import captured_upstream_messages
from harness.errors import UnknownNameError
from harness.judging.compare import compare_outputs
from harness.model.case import build_case
from harness.model.config import RnnConfig
from harness.model.tolerance import TolerancePolicy

CPU_BACKENDS = ["torchscript-script", "torchscript-trace", "onnxruntime-legacy", "onnxruntime-dynamo"]
SPREAD = [
    RnnConfig(),
    RnnConfig(cell="rnn_relu", bidirectional=True),
    RnnConfig(cell="lstm", num_layers=2, initial_state="random"),
    RnnConfig(cell="gru", batch_first=True, input="random", seq_len=12, batch=3),
    RnnConfig(cell="gru", num_layers=2, bidirectional=True, bias=False, seed=9),
]


def run_backend(name: str, config: RnnConfig) -> dict[str, np.ndarray]:
    case = build_case(config)
    with captured_upstream_messages():
        return get_backend(name).prepare(case).run(case.inputs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("config", SPREAD, ids=lambda config: config.id)
def test_backend_matches_eager_within_default_tolerance(backend: str, config: RnnConfig) -> None:
    expected = run_backend("eager", config)
    actual = run_backend(backend, config)
    tolerance = TolerancePolicy().for_cell(backend, config.dtype)
    comparisons = compare_outputs(expected, actual, tolerance)
    assert [c.name for c in comparisons] == list(expected)
    assert all(c.passed for c in comparisons), comparisons


@pytest.mark.parametrize("backend", ["torchscript-script", "torchscript-trace"])
def test_torchscript_is_bitwise_equal_to_eager(backend: str) -> None:
    config = RnnConfig(cell="lstm", bidirectional=True)
    expected, actual = run_backend("eager", config), run_backend(backend, config)
    assert all(np.array_equal(expected[name], actual[name]) for name in expected)


def test_eager_float64_and_outputs_have_documented_shapes() -> None:
    outputs = run_backend("eager", RnnConfig(cell="lstm", proj_size=4, num_layers=2, bidirectional=True,
                                             dtype="float64"))
    assert outputs["output"].shape == (3, 5, 8) and outputs["output"].dtype == np.float64
    assert outputs["h_n"].shape == (4, 5, 4) and outputs["c_n"].shape == (4, 5, 8)


def test_known_limitations_are_declared_and_really_fail() -> None:
    legacy = get_backend("onnxruntime-legacy")
    config = RnnConfig(cell="lstm", proj_size=4)
    assert "projections" in (legacy.known_limitation(config) or "")
    with pytest.raises(Exception, match="LSTMs with projections"):
        run_backend("onnxruntime-legacy", config)
    assert get_backend("onnxruntime-dynamo").known_limitation(RnnConfig(dtype="float64")) is None


def test_dynamo_marks_long_plain_rnns_slow_but_not_lstm() -> None:
    dynamo = get_backend("onnxruntime-dynamo")
    long_rnn = RnnConfig(input="random", seq_len=200, batch=2)
    assert dynamo.is_slow(long_rnn)
    assert not dynamo.is_slow(RnnConfig(cell="lstm", input="random", seq_len=200, batch=2))
    assert not get_backend("onnxruntime-legacy").is_slow(long_rnn)


def test_cuda_backends_say_why_they_are_unavailable() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present on this machine: the unavailable path cannot be observed")
    status = get_backend("eager-cuda").availability()
    assert not status.available and "no CUDA device" in status.reason


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA device on this machine")
def test_eager_cuda_matches_eager_cpu() -> None:
    config = RnnConfig(cell="gru", num_layers=2)
    expected, actual = run_backend("eager", config), run_backend("eager-cuda", config)
    tolerance = TolerancePolicy().for_cell("eager-cuda", "float32")
    assert all(c.passed for c in compare_outputs(expected, actual, tolerance))


def test_registry_names_and_unknown_backend() -> None:
    assert backend_names()[:5] == ["eager", "torchscript-script", "torchscript-trace", "onnxruntime-legacy",
                                   "onnxruntime-dynamo"]
    with pytest.raises(UnknownNameError, match="unknown backend 'tensorrt'"):
        get_backend("tensorrt")
