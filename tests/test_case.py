from __future__ import annotations

import numpy as np
import torch

from harness.model.axes import tensor_axes
from harness.model.case import build_case, build_module
from harness.model.config import RnnConfig
from harness.model.inputs import build_inputs, hello_batch


def notebook_outputs() -> tuple[np.ndarray, np.ndarray]:
    """The reference notebook code, verbatim apart from returning numpy arrays."""
    torch.manual_seed(0)
    h, e, l, o = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]  # noqa: E741
    x = torch.Tensor(np.array([[h, e, l, l, o], [o, l, l, e, h], [l, l, e, e, l]], dtype=np.float32))
    rnn = torch.nn.RNN(input_size=4, hidden_size=8)
    outputs, hidden = rnn(x)
    return outputs.detach().numpy(), hidden.detach().numpy()


def test_hello_batch_is_the_notebook_x() -> None:
    x = hello_batch()
    assert x.shape == (3, 5, 4) and x.dtype == np.float32
    assert x[0].argmax(axis=1).tolist() == [0, 1, 2, 2, 3]  # h e l l o
    assert x[1].argmax(axis=1).tolist() == [3, 2, 2, 1, 0]  # o l l e h


def test_reference_case_computes_what_the_notebook_computes() -> None:
    case = build_case(RnnConfig())
    with torch.no_grad():
        output, h_n = case.module(torch.from_numpy(case.inputs["input"]))
    expected_output, expected_hidden = notebook_outputs()
    assert output.shape == (3, 5, 8) and h_n.shape == (1, 5, 8)
    np.testing.assert_array_equal(output.numpy(), expected_output)
    np.testing.assert_array_equal(h_n.numpy(), expected_hidden)


def test_building_does_not_touch_the_callers_rng() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    build_module(RnnConfig(cell="lstm"))
    assert torch.equal(before, torch.random.get_rng_state())


def test_seed_decides_weights_and_extra_draws_do_not_leak_in() -> None:
    first = build_case(RnnConfig(seed=0))
    torch.rand(10)  # an unrelated draw in between must not change the next build
    again = build_case(RnnConfig(seed=0))
    other = build_case(RnnConfig(seed=1))
    assert first.weights_sha256 == again.weights_sha256
    assert first.weights_sha256 != other.weights_sha256
    assert first.inputs_sha256 == other.inputs_sha256  # the hello batch does not depend on the seed


def test_batch_first_transposes_inputs_and_axes() -> None:
    sequence_first = build_inputs(RnnConfig(cell="gru", input="random", seq_len=7, batch=2))["input"]
    batch_first = build_inputs(RnnConfig(cell="gru", input="random", seq_len=7, batch=2, batch_first=True))["input"]
    assert sequence_first.shape == (7, 2, 4) and batch_first.shape == (2, 7, 4)
    np.testing.assert_array_equal(sequence_first.transpose(1, 0, 2), batch_first)
    assert tensor_axes(RnnConfig())["output"] == ("seq", "batch", "directions*hidden")
    assert tensor_axes(RnnConfig(batch_first=True))["output"] == ("batch", "seq", "directions*hidden")


def test_random_inputs_are_seeded_one_hot_and_states_have_documented_shapes() -> None:
    config = RnnConfig(cell="lstm", input="random", seq_len=9, batch=3, num_layers=2, bidirectional=True,
                       proj_size=3, initial_state="random", seed=5)
    inputs = build_inputs(config)
    assert inputs["input"].shape == (9, 3, 4)
    np.testing.assert_array_equal(inputs["input"].sum(axis=2), np.ones((9, 3)))
    assert inputs["h0"].shape == (4, 3, 3) and inputs["c0"].shape == (4, 3, 8)
    np.testing.assert_array_equal(inputs["h0"], build_inputs(config)["h0"])


def test_float64_is_the_float32_module_cast() -> None:
    single = build_module(RnnConfig())
    double = build_module(RnnConfig(dtype="float64"))
    for (name, a), (_, b) in zip(single.state_dict().items(), double.state_dict().items(), strict=True):
        assert b.dtype == torch.float64, name
        assert torch.equal(a.double(), b), name
