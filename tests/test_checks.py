"""The "grad" and "train" checks end to end: goldens of gradients and loss curves, a perturbed backward pass
caught while the forward pass still passes, determinism of backward, and forward-only backends."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.backends import get_backend
from harness.model.case import build_case
from harness.model.config import RnnConfig
from harness.model.suite import parse_suite
from harness.session.execution import execute
from harness.store.golden import GoldenStore
from tests.conftest import COMMITTED_GOLDEN, REFERENCE_ID, CliResult
from tests.doubles import registered_doubles

Cli = Callable[..., CliResult]
GRAD_ID, TRAIN_ID = "rnn-h8-grad-s0", "rnn-h8-train20-s0"


@pytest.fixture(autouse=True)
def doubles() -> Iterator[None]:
    with registered_doubles():
        yield


def cells(report: Path) -> dict[tuple[str, str], dict[str, object]]:
    return {(cell["config"], cell["backend"]): cell for cell in json.loads(report.read_text())["cells"]}


def test_a_gradient_perturbed_by_1e_4_is_drift_in_the_grad_check_while_forward_passes(
        cli: Cli, golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy(REFERENCE_ID, GRAD_ID)
    report = tmp_path / "report.json"
    result = cli("run", "--config", REFERENCE_ID, "--config", GRAD_ID, "--golden-dir", str(golden),
                 "--backend", "eager", "--backend", "test-grad-hook", "--json", str(report))
    assert result.exit_code == 1
    found = cells(report)
    assert found[(REFERENCE_ID, "test-grad-hook")]["verdict"] == "identical"  # the hook is on backward only
    assert found[(GRAD_ID, "eager")]["verdict"] == "identical"
    drift = found[(GRAD_ID, "test-grad-hook")]
    assert drift["verdict"] == "DRIFT" and str(drift["cause"]).startswith("compute changed")
    moved = {tensor["name"]: tensor for tensor in drift["tensors"] if tensor["status"] == "drift"}  # type: ignore[union-attr]
    assert list(moved) == ["grad.weight_hh_l0"]  # the one gradient the hook touched, and nothing else
    assert moved["grad.weight_hh_l0"]["max_abs"] == pytest.approx(1e-4, rel=1e-2)  # float32 rounding of grad + 1e-4
    assert f"{GRAD_ID} x test-grad-hook: DRIFT" in result.out and "grad.weight_hh_l0" in result.out


def test_the_grad_golden_holds_the_loss_and_a_gradient_for_every_input_and_parameter() -> None:
    golden = GoldenStore(COMMITTED_GOLDEN).load(GRAD_ID)
    case = build_case(golden.config)
    parameters = [name for name, _ in case.module.named_parameters()]
    assert list(golden.tensors) == ["loss", "grad.input", *(f"grad.{name}" for name in parameters)]
    for name in parameters:
        assert golden.tensors[f"grad.{name}"].shape == tuple(dict(case.module.named_parameters())[name].shape)
    assert golden.tensors["grad.input"].shape == (3, 5, 4) and golden.tensors["loss"].shape == ()
    assert all(np.abs(array).max() > 0 for array in golden.tensors.values())  # a loss that reaches every weight


@pytest.mark.parametrize("backend", ["eager", "torchscript-script", "torchscript-trace", "torch-export"])
def test_every_autograd_backend_computes_the_golden_gradients_and_training(backend: str) -> None:
    for config_id in (GRAD_ID, "lstm-h8-l2-bi-gauss-t6b4-grad-s0", TRAIN_ID):
        golden = GoldenStore(COMMITTED_GOLDEN).load(config_id)
        outputs = execute(build_case(golden.config), get_backend(backend)).first
        assert list(outputs) == list(golden.tensors)
        for name, expected in golden.tensors.items():
            np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=2e-6, err_msg=f"{config_id} {name}")


def test_training_repeats_bitwise_on_eager_cpu_and_restores_the_weights() -> None:
    case = build_case(GoldenStore(COMMITTED_GOLDEN).load(TRAIN_ID).config)
    before = {name: tensor.clone() for name, tensor in case.module.state_dict().items()}
    execution = execute(case, get_backend("eager"))
    for name in execution.first:
        assert execution.first[name].tobytes() == execution.second[name].tobytes(), name
    assert all(before[name].equal(tensor) for name, tensor in case.module.state_dict().items())
    losses = execution.first["loss"]
    assert losses.shape == (20,) and losses[-1] < losses[0]  # it learns the next-character task
    assert not np.array_equal(execution.first["weight.weight_hh_l0"], before["weight_hh_l0"].numpy())


def test_a_backward_kernel_that_drifts_names_the_first_diverging_training_step(
        cli: Cli, golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy(TRAIN_ID)
    result = cli("run", "--config", TRAIN_ID, "--golden-dir", str(golden), "--backend", "test-grad-hook")
    assert result.exit_code == 1
    assert f"{TRAIN_ID} x test-grad-hook: DRIFT" in result.out
    # Step 1's loss comes before any update, so it is the golden's; the hooked gradient moves the weights by
    # lr * 1e-4 a step, which reaches the float32 loss a step or two later and grows from there.
    line = next(line for line in result.out.splitlines() if "loss curves (golden vs this run)" in line)
    found = re.search(r"first diverge at step (\d+) of 20 .*beyond tolerance from step (\d+); largest \|d loss\| "
                      r"(\S+) at step 20", line)
    assert found, line
    first, beyond, largest = int(found[1]), int(found[2]), float(found[3])
    assert 2 <= first <= beyond <= 20 and largest > 1e-6
    golden_losses = GoldenStore(golden).load(TRAIN_ID).tensors["loss"]
    hooked = execute(build_case(GoldenStore(golden).load(TRAIN_ID).config), get_backend("test-grad-hook")).first
    differing = np.flatnonzero(hooked["loss"] != golden_losses)
    assert differing[0] + 1 == first  # the step the report names is the first that differs


def test_a_nondeterministic_backward_is_caught_by_the_repeat_and_the_probes(
        cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(GRAD_ID, TRAIN_ID)
    result = cli("run", "--config", GRAD_ID, "--config", TRAIN_ID, "--golden-dir", str(golden),
                 "--backend", "test-grad-noise")
    assert result.exit_code == 1
    assert f"{GRAD_ID} x test-grad-noise: NONDETERMINISTIC" in result.out
    assert f"{TRAIN_ID} x test-grad-noise: NONDETERMINISTIC" in result.out
    assert re.search(r"loss curves \(two runs\): first diverge at step \d+ of 20", result.out)
    probed = cli("probe", "--config", GRAD_ID, "--backend", "eager")  # repeat, fresh process, threads: on backward
    assert probed.exit_code == 0, probed.out


def test_forward_only_backends_are_unsupported_for_grad_and_train(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(GRAD_ID, TRAIN_ID)
    result = cli("run", "--config", GRAD_ID, "--config", TRAIN_ID, "--golden-dir", str(golden),
                 "--backend", "onnxruntime-legacy", "--backend", "onnx-reference-dynamo")
    assert result.exit_code == 0
    assert ("    4 onnxruntime-legacy, onnx-reference-dynamo: has no autograd: forward pass only (gradient and "
            "training configs)") in result.out.splitlines()  # one line for the reason, not one per cell
    verbose = cli("run", "--config", GRAD_ID, "--config", TRAIN_ID, "--golden-dir", str(golden),
                  "--backend", "onnxruntime-legacy", "--backend", "onnx-reference-dynamo", "-v")
    for backend in ("onnxruntime-legacy", "onnx-reference-dynamo"):  # -v: one line per backend
        assert (f"  {backend}: has no autograd (it computes the forward pass only): 2 gradient/training configs, "
                f"{GRAD_ID}, {TRAIN_ID}") in verbose.out


def test_checks_expand_into_one_config_each_and_train_keeps_its_steps() -> None:
    suite = parse_suite({"case": [{"cell": "gru", "checks": ["forward", "grad", "train"], "train_steps": 5,
                                   "learning_rate": 0.5}]}, source="s.toml")
    assert suite.ids() == ["gru-h8-s0", "gru-h8-grad-s0", "gru-h8-train5lr0.5-s0"]
    train = suite.configs[2]
    assert (train.check, train.train_steps, train.learning_rate) == ("train", 5, 0.5)
    assert suite.configs[0].train_steps == 0 and suite.configs[1].learning_rate == 0.1


@pytest.mark.parametrize(("case", "message"), [
    ({"checks": []}, "checks must be a non-empty list"),
    ({"checks": ["grad", "grad"]}, "lists a check twice"),
    ({"checks": ["backward"]}, "check must be one of forward, grad, train"),
    ({"checks": ["train"]}, "check 'train' needs train_steps"),
    ({"check": "grad", "checks": ["grad"]}, "either check or checks"),
    ({"check": "train", "train_steps": 3, "input": "random", "seq_len": 4, "batch": 2},
     "learns the hello next-character task"),
    ({"train_steps": 3}, "belong to check 'train'"),
])
def test_bad_check_fields_name_the_case(case: dict[str, object], message: str) -> None:
    from harness.errors import SuiteError

    with pytest.raises(SuiteError, match=f"s.toml: case 1: .*{message}"):
        parse_suite({"case": [case]}, source="s.toml")


def test_the_reference_config_keeps_the_content_hash_its_golden_was_recorded_under() -> None:
    manifest = json.loads((COMMITTED_GOLDEN / f"{REFERENCE_ID}.json").read_text())
    assert RnnConfig().content_hash == manifest["config_hash"]
    assert "check" not in RnnConfig().to_dict() and RnnConfig(check="grad").to_dict()["check"] == "grad"
