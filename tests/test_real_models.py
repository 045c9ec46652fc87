"""Users' real models with their own inputs, targets and loss (suite keys `inputs`, `targets`, `loss`): the two
public example models of examples/real-models (pytorch/examples' word-level language model with an (h, c) state
and token ids, and its float64 LSTMCell time-series regressor), brought with no wrapper module, through every
command: record, run, replay (also without torch), bundle with `polygraphy run`, and the plugin."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import ConfigError, GoldenError
from harness.model.case import build_case
from harness.model.config import RnnConfig
from harness.model.suite import load_suite
from harness.store.golden import GoldenStore
from tests.test_bundle import polygraphy_check
from tests.test_torch_free import harness_without_torch

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "real-models"
SUITE = EXAMPLE / "suite.toml"
GOLDEN = EXAMPLE / "golden"
HARNESS = (sys.executable, "-m", "harness")
LM = "word-language-model.build-lstm-h16-l2-tokens-t6b4-s0"
LM_GRAD = "word-language-model.build-lstm-h16-l2-tokens-t6b4-grad-nll-s0"
LM_TRAIN = "word-language-model.build-lstm-h16-l2-tokens-t6b4-train10lr0.5-nll-s0"
WAVES = "time-sequence-prediction.build-lstm-h16-f64-waves-t12b3-s0"
WAVES_TRAIN = "time-sequence-prediction.build-lstm-h16-f64-waves-t12b3-train10lr0.01-adam-mse-s0"


def harness(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *argv], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def example_config(config_id: str) -> RnnConfig:
    return next(config for config in load_suite(SUITE).configs if config.id == config_id)


def cells(report: Path) -> dict[tuple[str, str], dict[str, object]]:
    return {(cell["config"], cell["backend"]): cell for cell in json.loads(report.read_text())["cells"]}


# --- the suite keys ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"inputs": "m:f"}, "inputs belongs to a user's model: give `model` too"),
    ({"model": "m:build", "targets": "m:t", "check": "grad"}, "targets are what a loss compares with"),
    ({"model": "m:build", "loss": "m:l"}, "targets and loss belong to checks 'grad' and 'train'"),
    ({"model": "m:build", "inputs": "m:f", "input": "gaussian", "seq_len": 4, "batch": 2}, "leave input, lengths"),
    ({"model": "m:build", "inputs": "m:f", "initial_state": "random"}, "leave input, lengths and initial_state"),
    ({"model": "m:build", "optimizer": "adam"}, "optimizer belong to check 'train'"),
    ({"model": "m:build", "loss": "not a reference", "check": "grad"}, "loss must be 'package.module:function'"),
    ({"model": "m:build", "check": "train", "train_steps": 2, "optimizer": "lbfgs"}, "optimizer must be one of sgd"),
])
def test_bad_user_function_keys_are_one_line_config_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RnnConfig.from_dict(fields)
    assert message in raised.value.message
    assert "\n" not in raised.value.message


def test_checks_give_targets_and_loss_to_grad_and_train_only() -> None:
    """One case lists forward, grad and train: the forward config takes neither targets nor loss, so its id and
    hash are those of the model and inputs alone; train alone takes the optimiser."""
    by_id = {config.id: config for config in load_suite(SUITE).configs}
    assert (by_id[LM].loss, by_id[LM].targets, by_id[LM].optimizer) == ("", "", "sgd")
    assert by_id[LM_GRAD].loss == "word_language_model:nll" and by_id[LM_GRAD].optimizer == "sgd"
    assert by_id[WAVES_TRAIN].optimizer == "adam"


def test_a_tuple_input_is_one_argument_and_nested_outputs_are_flattened_and_named() -> None:
    case = build_case(example_config(LM))
    assert case.input_names == ["tokens", "hidden_0", "hidden_1"]
    assert case.inputs["tokens"].dtype == np.int64 and case.inputs["tokens"].shape == (6, 4)
    assert case.argument_groups == (0, 2)
    assert case.forward_names == ["output_0", "output_1_0", "output_1_1"]  # (log_probs, (h, c))
    grad = build_case(example_config(LM_GRAD))
    # token ids take no gradient; the state does, and every parameter
    assert [name for name in grad.output_names if name.startswith("grad.hidden")] == ["grad.hidden_0", "grad.hidden_1"]
    assert "grad.tokens" not in grad.output_names and "grad.encoder.weight" in grad.output_names


def test_the_users_loss_is_what_grad_differentiates(tmp_path: Path) -> None:
    """The golden's loss is the example's nll_loss of the eager model on the example's targets, computed here by
    hand: the harness called the user's functions, not a seeded sum of its own."""
    import word_language_model as lm  # found next to the suite (load_suite put it on the model path)

    config = example_config(LM_GRAD)
    golden = GoldenStore(GOLDEN).load_for(config)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = lm.build(config).eval()
    tokens = torch.from_numpy(lm.tokens(config, None)["tokens"])
    state = torch.zeros(config.num_layers, config.batch, config.hidden_size)
    log_probs, _ = model(tokens, (state, state.clone()))
    expected = lm.nll((log_probs,), {"next": torch.from_numpy(lm.next_tokens(config, None)["next"])})
    assert golden.tensors["loss"] == pytest.approx(expected.item(), rel=1e-6)


def test_training_with_adam_on_the_users_loss_lowers_it() -> None:
    golden = GoldenStore(GOLDEN).load_for(example_config(WAVES_TRAIN))
    losses = golden.tensors["loss"]
    assert losses.shape == (10,) and losses.dtype == np.float64
    assert losses[-1] < losses[0]


def test_the_golden_stores_the_users_inputs_and_a_swapped_one_is_refused(tmp_path: Path) -> None:
    """Replay cannot call the user's function: the golden holds the inputs, sha256-checked like its tensors."""
    store = GoldenStore(GOLDEN)
    golden = store.load(LM)
    assert list(golden.stored_inputs) == ["tokens", "hidden_0", "hidden_1"]
    assert golden.inputs()["tokens"].dtype == np.int64
    copy = tmp_path / "golden"
    shutil.copytree(GOLDEN, copy)
    manifest_path = copy / f"{LM}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["stored_inputs"]["tokens"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(GoldenError, match="tensor 'tokens' does not match the sha256"):
        GoldenStore(copy).load(LM)


def test_a_zero_gradient_for_an_input_that_takes_gradients_is_a_warning(tmp_path: Path) -> None:
    """A model that takes the argmax of its float input: its recorded grad.input is all zeros, and the run says so."""
    (tmp_path / "argmax_model.py").write_text(
        "import numpy as np\nimport torch\n\n\n"
        "class Lookup(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.embed = torch.nn.Embedding(4, 3)\n"
        "        self.rnn = torch.nn.GRU(3, 5)\n\n"
        "    def forward(self, x):\n        return self.rnn(self.embed(x.argmax(-1)))[0]\n\n\n"
        "def build(config):\n    return Lookup()\n")
    (tmp_path / "suite.toml").write_text('[[case]]\nmodel = "argmax_model:build"\ncell = "gru"\nhidden_size = 5\n'
                                         'check = "grad"\n')
    report = tmp_path / "r.json"
    result = harness("check", "--suite", str(tmp_path / "suite.toml"), "--backend", "torchscript-trace",
                     "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    notes = json.dumps(json.loads(report.read_text()))
    assert "ZeroGradientWarning" in notes and "input(s) input is zero everywhere" in notes


# --- the example through every command -------------------------------------------------------------------------

def test_run_judges_every_backend_that_can_take_them_and_records_the_rest(tmp_path: Path) -> None:
    """Forward, grad and train on eager and every other backend; TorchScript's script cannot take the language
    model's untyped (h, c) argument: recorded as unsupported with TorchScript's whole message, exit 0."""
    report = tmp_path / "run.json"
    result = harness("run", "--suite", str(SUITE), "--golden-dir", str(GOLDEN), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    judged = cells(report)
    for config in (LM, LM_GRAD, LM_TRAIN, WAVES, WAVES_TRAIN):
        for backend in ("eager", "torchscript-trace", "torch-export"):
            assert judged[(config, backend)]["verdict"] in ("identical", "close"), (config, backend)
    for backend in ("onnxruntime-legacy", "onnxruntime-dynamo", "onnx-reference-dynamo"):
        assert judged[(LM, backend)]["verdict"] in ("identical", "close"), backend
    scripted = judged[(LM, "torchscript-script")]
    assert scripted["verdict"] == "unsupported"
    assert "recorded" in str(scripted["reason"])
    assert "hidden" in str(scripted["reason_detail"]) and "~~~" in str(scripted["reason_detail"])  # the marker
    assert judged[(WAVES, "torchscript-script")]["verdict"] in ("identical", "close")


def test_replay_of_the_users_models_needs_neither_torch_nor_their_modules(tmp_path: Path) -> None:
    report = tmp_path / "replay.json"
    result = harness_without_torch("replay", "--backend", "onnx", "--quiet", "--suite", str(SUITE),
                                   "--golden-dir", str(GOLDEN), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    judged = cells(report)
    for config in (LM, WAVES):
        for backend in ("onnxruntime-legacy", "onnxruntime-dynamo", "onnx-reference-legacy", "onnx-reference-dynamo"):
            assert judged[(config, backend)]["verdict"] in ("identical", "close"), (config, backend)


def test_bundle_of_the_language_model_passes_polygraphy(tmp_path: Path) -> None:
    """The token ids (int64) and the two state tensors go into Polygraphy's inputs file under the names the
    exported model takes."""
    out = tmp_path / "bundle"
    result = harness("bundle", LM, str(out), "--backend", "onnxruntime-dynamo", "--suite", str(SUITE),
                     "--golden-dir", str(GOLDEN))
    assert result.returncode == 0, result.stdout + result.stderr
    checked = polygraphy_check(out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PASSED" in checked.stdout + checked.stderr


def test_the_plugin_runs_the_users_models(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--harness", f"--harness-suite={SUITE}",
         f"--harness-golden-dir={GOLDEN}", "-k", "eager or torchscript", str(EXAMPLE)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_probes_read_the_recorded_limitations_from_the_goldens(tmp_path: Path) -> None:
    """Without goldens a backend that cannot take the model is an error of the probes; with them it is the
    limitation the golden recorded, and the probes pass."""
    selected = ("--config", LM, "--backend", "torchscript-script,eager", "--no-fresh-process", "--suite", str(SUITE))
    without = harness("probe", *selected, "--golden-dir", str(tmp_path / "none"))
    assert without.returncode == 1, without.stdout + without.stderr
    assert "torchscript-script: probes" in without.stdout and "error: RuntimeError" in without.stdout
    report = tmp_path / "probes.json"
    with_goldens = harness("probe", *selected, "--golden-dir", str(GOLDEN), "--json", str(report))
    assert with_goldens.returncode == 0, with_goldens.stdout + with_goldens.stderr
    assert "torchscript-script: recorded: RuntimeError: Arguments for call are not valid." in with_goldens.stdout


def test_replay_keeps_the_whole_recorded_error_of_a_backend_that_stored_nothing(tmp_path: Path) -> None:
    report = tmp_path / "replay.json"
    result = harness("replay", "--backend", "torchscript-script", "--config", LM, "--suite", str(SUITE),
                     "--golden-dir", str(GOLDEN), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    cell = cells(report)[(LM, "torchscript-script")]
    assert cell["verdict"] == "unsupported"
    assert str(cell["reason"]).startswith("nothing stored: at record time RuntimeError: Arguments for call")
    assert "hidden" in str(cell["reason_detail"]) and "~~~" in str(cell["reason_detail"])


def test_goldens_recorded_by_the_plugin_hold_the_recorded_limitations(tmp_path: Path) -> None:
    """`pytest --harness --harness-update` records a user's model as `harness record` does: the language model's
    torchscript-script is stored as unsupported, and the next plugin run passes."""
    selected = [f"--harness-suite={SUITE}", f"--harness-golden-dir={tmp_path / 'g'}", "-k", f"{LM}-"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--harness", *selected, str(EXAMPLE)]
    recorded = subprocess.run([*command, "--harness-update"], cwd=REPO, capture_output=True, text=True,
                              timeout=600, check=False)
    assert recorded.returncode == 0, recorded.stdout[-3000:] + recorded.stderr[-2000:]
    manifest = json.loads((tmp_path / "g" / f"{LM}.json").read_text())
    assert manifest["backend_fingerprints"]["torchscript-script"]["status"] == "unsupported"
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "xfailed" in again.stdout or "skipped" in again.stdout


def test_a_probe_that_cannot_prepare_keeps_the_whole_upstream_error(tmp_path: Path) -> None:
    """The first line in the table, TorchScript's source line and marker under it, every line in the JSON."""
    report = tmp_path / "probes.json"
    result = harness("probe", "--config", LM, "--backend", "torchscript-script", "--no-fresh-process", "--suite",
                     str(SUITE), "--golden-dir", str(tmp_path / "none"), "--json", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "~~~" in result.stdout or "<--- HERE" in result.stdout  # the marker under the source line
    probes = json.loads(report.read_text())["probes"]
    detail = next(probe["reason_detail"] for probe in probes if probe["verdict"] == "error")
    assert detail.startswith("RuntimeError: Arguments for call are not valid.") and detail.count("\n") >= 3
