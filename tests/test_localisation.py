"""Localisation (harness.judging.localisation, backends.layer_states, session.localise, reports.localisation): the
first diverging layer, direction and step of a drifting cell, and the error a step makes on its own (teacher
forced) told apart from the error it carries in. Injections are planted for real in stored ONNX artifacts with
the manifest re-sealed, then replayed through the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from harness.backends.layer_states import reference_stack, stack_parameters, torch_states
from harness.judging.localisation import StackStates, localise
from harness.judging.results import RunReport
from harness.model.case import build_case
from harness.model.config import RnnConfig
from harness.model.tolerance import Tolerance
from harness.reports.localisation import _colour
from harness.store.artifacts import artifact_file_name
from harness.store.gates.onnx_structure import onnx_structure
from tests.conftest import CliResult
from tests.test_torch_free import harness_without_torch

FLOAT32 = Tolerance(atol=2e-6, rtol=1e-5)
LSTM = "lstm-h8-l2-bi-s0"
GRU = "gru-h8-bi-s0"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# --- the analysis alone, on tiny arrays ----------------------------------------------------------------------

def test_an_error_made_at_one_step_is_told_from_the_error_carried_after_it() -> None:
    reference = {key: np.zeros((4, 1, 2)) for key in [(1, "forward"), (1, "reverse"), (2, "forward")]}
    local = {key: array.copy() for key, array in reference.items()}
    free = {key: array.copy() for key, array in reference.items()}
    local[(1, "forward")][2] = 1e-3  # layer 1 forward errs at step 2 ...
    free[(1, "forward")][2:] = [[[1e-3]], [[2e-3]]]  # ... and carries it to step 3
    free[(2, "forward")][2:] = 5e-4  # layer 2 only carries it
    found = localise(StackStates(reference=reference, free=free, local=local), tolerance=FLOAT32, dtype="float32")
    assert found.first is not None and found.first.to_dict() == {"layer": 1, "direction": "forward", "step": 2}
    layer1 = found.per_layer[0]
    assert layer1.local[2] == pytest.approx(1e-3) and layer1.carried[3] == pytest.approx(2e-3)
    assert layer1.growth == pytest.approx(2.0)
    assert found.finding.startswith("where: layer 1, forward, first diverges at step 2 (local 0.001 at step 2; "
                                    "layer 2 only carries it: local <= 0 everywhere)")


def test_a_reverse_direction_diverges_first_at_its_own_first_step_the_last_one() -> None:
    reference = {key: np.zeros((3, 1, 1)) for key in [(1, "forward"), (1, "reverse")]}
    local = {key: array.copy() for key, array in reference.items()}
    local[(1, "forward")][1] = 1.0
    local[(1, "reverse")][2] = 1.0  # processed first by the reverse direction
    found = localise(StackStates(reference=reference, free=local, local=local), tolerance=FLOAT32, dtype="float32")
    assert found.first is not None and (found.first.direction, found.first.step) == ("reverse", 2)


def test_accumulated_rounding_without_any_step_of_its_own_is_said_so() -> None:
    reference = {(1, "forward"): np.zeros((5, 1, 1))}
    free = {(1, "forward"): np.array([0, 1e-6, 4e-6, 1.6e-5, 6.4e-5]).reshape(5, 1, 1)}
    found = localise(StackStates(reference=reference, free=free, local=reference), tolerance=FLOAT32,
                     dtype="float32")
    assert found.first is not None and not found.first.own and found.first.step == 2
    assert "no step's own error above" in found.finding and "x4 per step" in found.finding


# --- torch's kernels --------------------------------------------------------------------------------------------

def test_the_stack_run_layer_by_layer_is_the_stack_and_a_changed_layer_2_weight_is_found() -> None:
    config = RnnConfig(cell="lstm", num_layers=2, bidirectional=True, input="random", seq_len=6, batch=3)
    case = build_case(config)
    reference = reference_stack(case.module, config, case.inputs)
    stack = stack_parameters(case.module.state_dict())
    free, local, _ = torch_states(stack, config, case.inputs, reference)
    with torch.no_grad():
        output = case.module(torch.from_numpy(case.inputs["input"]))[0].numpy()
    assert np.array_equal(np.concatenate([free[(2, "forward")], free[(2, "reverse")]], axis=-1), output)
    changed = {name: tensor.clone() for name, tensor in stack.items()}
    changed["weight_ih_l1_reverse"][3, 5] += 0.25  # layer 2 reverse reads its input at every step
    free, local, notes = torch_states(changed, config, case.inputs, reference)
    found = localise(StackStates(reference=reference.h, free=free, local=local, notes=notes), tolerance=FLOAT32,
                     dtype="float32")
    assert found.first is not None and found.first.to_dict() == {"layer": 2, "direction": "reverse", "step": 5}
    assert max(found.per_layer[0].local) < 1e-6 and max(found.per_layer[1].local) < 1e-6  # layer 1 is clean


# --- planted in a stored ONNX artifact, replayed from the CLI -----------------------------------------------------

def plant(golden: Path, config_id: str, backend: str, change: Callable[[onnx.ModelProto], None]) -> None:
    """Change the backend's stored ONNX artifact and re-seal its manifest entry (file, sha256, size, structure)."""
    path = golden / f"{config_id}.json"
    manifest = json.loads(path.read_text())
    entry = manifest["artifacts"][backend]
    model = onnx.load_from_string((golden / "artifacts" / entry["file"]).read_bytes())
    change(model)
    data = model.SerializeToString()
    sha256 = hashlib.sha256(data).hexdigest()
    entry.update(file=artifact_file_name(config_id, entry["kind"], sha256), sha256=sha256, bytes=len(data),
                 structure=onnx_structure(data).to_dict())
    (golden / "artifacts" / entry["file"]).write_bytes(data)
    path.write_text(json.dumps(manifest, indent=2))


def recurrent_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type in ("RNN", "GRU", "LSTM")]


def nudge_layer_1_forward_recurrent_weight(model: onnx.ModelProto) -> None:
    name = recurrent_nodes(model)[0].input[2]  # R: [directions, gates x hidden, hidden]; direction 0 is forward
    initializer = next(tensor for tensor in model.graph.initializer if tensor.name == name)
    weights = numpy_helper.to_array(initializer).copy()
    weights[0, 0, 0] += 0.5
    initializer.CopyFrom(numpy_helper.from_array(weights, name))


def flip_linear_before_reset(model: onnx.ModelProto) -> None:
    attribute = next(item for item in recurrent_nodes(model)[0].attribute if item.name == "linear_before_reset")
    attribute.i = 1 - attribute.i


def replayed(cli: Callable[..., CliResult], golden: Path, config_id: str, backend: str,
             tmp_path: Path) -> tuple[CliResult, dict[str, object]]:
    report = tmp_path / "report.json"
    result = cli("replay", "--golden-dir", str(golden), "--config", config_id, "--backend", backend,
                 "--json", str(report), "--html", str(tmp_path / "report.html"))
    (cell,) = json.loads(report.read_text())["cells"]
    return result, cell


def where_lines(result: CliResult) -> list[str]:
    return [line.strip() for line in result.out.splitlines() if line.strip().startswith("where:")]


def test_a_recurrent_weight_of_layer_1_forward_is_found_at_step_1_and_layer_2_only_carries_it(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy(LSTM)
    plant(golden, LSTM, "onnxruntime-legacy", nudge_layer_1_forward_recurrent_weight)
    result, cell = replayed(cli, golden, LSTM, "onnxruntime-legacy", tmp_path)
    assert result.exit_code == 1 and cell["verdict"] == "DRIFT"
    localisation = cell["localisation"]
    assert localisation["first"] == {"layer": 1, "direction": "forward", "step": 1}  # step 0 starts from zeros
    layer2 = [layer for layer in localisation["per_layer"] if layer["layer"] == 2]
    assert all(max(layer["local"]) < 1e-6 and max(layer["carried"]) > 1e-5 for layer in layer2)
    (line,) = where_lines(result)
    assert line.startswith("where: layer 1, forward, first diverges at step 1 (local 0.0025 at step 1; "
                           "layer 2 only carries it: local <= ")
    assert "error grows x" in line


@pytest.mark.parametrize("backend", ["onnxruntime-dynamo", "onnx-reference-legacy"])
def test_a_gru_with_linear_before_reset_flipped_names_layer_direction_and_step(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path, backend: str) -> None:
    golden = golden_copy(GRU)
    plant(golden, GRU, backend, flip_linear_before_reset)
    result, cell = replayed(cli, golden, GRU, backend, tmp_path)
    assert cell["verdict"] == "DRIFT"
    # The node computes both directions: each errs on its own from its first step (r * (R h + Rb) is not R (r * h)
    # + Rb even from a zero state, where it is r * Rb against Rb).
    assert cell["localisation"]["first"] == {"layer": 1, "direction": "forward", "step": 0}
    (line,) = where_lines(result)
    assert line.startswith("where: layer 1, forward, first diverges at step 0")
    assert "layer 1 reverse errs on its own too" in line


def test_explain_localises_a_passing_cell_on_request(cli: Callable[..., CliResult]) -> None:
    result = cli("explain", LSTM, "--backend", "onnxruntime-legacy")
    assert result.exit_code == 0, result.out + result.err
    assert "where: no layer, direction or step leaves the noise (2e-06)" in result.out
    assert result.out.count("      layer ") == 4  # one line per layer and direction


def test_explain_needs_one_backend(cli: Callable[..., CliResult]) -> None:
    result = cli("explain", LSTM)
    assert result.exit_code == 2 and "needs exactly one --backend" in result.err


def test_without_torch_the_replay_still_judges_and_says_why_it_is_not_localised(
        golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(LSTM)
    plant(golden, LSTM, "onnxruntime-legacy", nudge_layer_1_forward_recurrent_weight)
    result = harness_without_torch("replay", "--golden-dir", str(golden), "--config", LSTM, "--backend",
                                   "onnxruntime-legacy")
    assert result.returncode == 1, result.stderr
    assert "where: not localised (torch cannot be imported here" in result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
def test_the_html_heat_map_renders_in_headless_chromium(cli: Callable[..., CliResult],
                                                         golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    from PIL import Image

    golden = golden_copy(LSTM)
    plant(golden, LSTM, "onnxruntime-legacy", nudge_layer_1_forward_recurrent_weight)
    _, cell = replayed(cli, golden, LSTM, "onnxruntime-legacy", tmp_path)
    page = tmp_path / "open.html"  # the details element opened, so that the screenshot shows the heat map
    page.write_text((tmp_path / "report.html").read_text().replace("<details ", "<details open "))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    dom = subprocess.run([*flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="heat-local"') == 1 and dom.count('class="heat-carried"') == 1
    assert dom.count("data-step=") == 2 * 4 * 3  # two panels x (2 layers x 2 directions) x 3 steps
    screenshot = tmp_path / "page.png"
    subprocess.run([*flags, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,4000",
                    f"--screenshot={screenshot}", page.as_uri()], check=True, capture_output=True, timeout=120)
    counts = {colour: n for n, colour in Image.open(screenshot).convert("RGB").getcolors(maxcolors=1 << 20) or []}
    hottest = max(cell["localisation"]["per_layer"][0]["local"])  # layer 1 forward at step 1
    colour = _colour(hottest, cell["localisation"]["noise"])
    assert counts.get(tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)), 0) >= 100  # its 13 x 13 square (less stroke)


# --- cost, on the largest default config (pytest-benchmark; compare within a group) ----------------------------

LARGEST = "lstm-h128-l2-bi-t32b8-s0"  # 2-layer bidirectional LSTM, 32 steps, hidden 128


@pytest.mark.parametrize("what", ["plain", "localised"])
@pytest.mark.parametrize(("command", "backend"), [("replay", "onnxruntime-legacy"), ("run", "eager")])
def test_localisation_cost_against_a_plain_cell(benchmark: Any, command: str, backend: str, what: str) -> None:
    """One cell of `replay` (or `run`) as it is, against the same cell localised (`harness explain`)."""
    from harness.session.core import Session
    from harness.session.explain import explain
    from harness.session.replay import replay
    from harness.session.settings import Settings

    stored = command == "replay"

    def once() -> RunReport:
        session = Session(Settings(configs=(LARGEST,), backends=(backend,)))
        if what == "localised":
            return explain(session, stored=stored)
        return replay(session) if stored else session.run()

    benchmark.group = f"localisation cost: {command} {LARGEST} x {backend}"
    report = benchmark.pedantic(once, rounds=3, iterations=1, warmup_rounds=1)
    (cell,) = report.cells
    assert not cell.verdict.failing
    assert (cell.localisation is not None) == (what == "localised")


# --- a user's model, by submodule -----------------------------------------------------------------------------------

REAL_MODELS = Path(__file__).resolve().parent.parent / "examples" / "real-models"
WORD_LM = "word-language-model.build-lstm-h16-l2-tokens-t6b4-s0"  # embedding -> 2-layer LSTM -> linear


def nudge_the_decoder(model: onnx.ModelProto) -> None:
    matmul = next(node for node in model.graph.node if node.op_type == "MatMul")  # the decoder's only MatMul
    initializer = next(tensor for tensor in model.graph.initializer if tensor.name in matmul.input)
    weights = numpy_helper.to_array(initializer).copy()
    weights[0, 0] += 0.05
    initializer.CopyFrom(numpy_helper.from_array(weights, initializer.name))


@pytest.mark.parametrize("backend", ["onnxruntime-legacy", "onnxruntime-dynamo"])
def test_a_users_model_with_perturbed_decoder_weights_moves_first_at_the_decoder(
        cli: Callable[..., CliResult], tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = tmp_path / "golden"
    (golden / "artifacts").mkdir(parents=True)
    manifest = json.loads((REAL_MODELS / "golden" / f"{WORD_LM}.json").read_text())
    shutil.copy2(REAL_MODELS / "golden" / f"{WORD_LM}.json", golden)
    shutil.copy2(REAL_MODELS / "golden" / manifest["tensors_file"], golden)
    for entry in manifest["artifacts"].values():
        shutil.copy2(REAL_MODELS / "golden" / "artifacts" / entry["file"], golden / "artifacts")
    plant(golden, WORD_LM, backend, nudge_the_decoder)
    monkeypatch.chdir(REAL_MODELS)  # the suite finds its modules next to itself
    report = tmp_path / "report.json"
    result = cli("replay", "--suite", "suite.toml", "--golden-dir", str(golden), "--config", WORD_LM,
                 "--backend", backend, "--json", str(report))
    (cell,) = json.loads(report.read_text())["cells"]
    assert cell["verdict"] == "DRIFT"
    localisation = cell["localisation"]
    assert localisation["first_submodule"] == "decoder"
    moved = {item["name"]: item["moved"] for item in localisation["submodules"] if item["max_abs"] is not None}
    assert moved == {"encoder": False, "rnn": False, "decoder": True}  # dropout (identity in eval) has no value
    (line,) = where_lines(result)
    assert line.startswith("where: submodule decoder (Linear) moves first")


def test_run_localises_a_drifting_cell_and_says_when_nothing_leaves_the_noise(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    """--bitwise makes ONNX Runtime's honest 1e-7 gap a DRIFT: localised, no step's error is above 4 ulps."""
    golden = golden_copy(LSTM)
    report = tmp_path / "report.json"
    result = cli("run", "--golden-dir", str(golden), "--config", LSTM, "--backend", "onnxruntime-legacy",
                 "--bitwise", "--json", str(report))
    (cell,) = json.loads(report.read_text())["cells"]
    assert result.exit_code == 1 and cell["verdict"] == "DRIFT"
    assert cell["localisation"]["first"] is None and len(cell["localisation"]["per_layer"]) == 4
    assert where_lines(result) == ["where: no layer, direction or step leaves the noise (5e-07)"]
