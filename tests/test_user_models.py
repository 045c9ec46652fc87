"""Users' own models (`model = "module:factory"` in a suite): the example suite from the CLI and the pytest plugin,
a factory kept next to its suite, every way a factory can fail, seeding, and attribution of changed weights."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from itertools import product
from pathlib import Path

import pytest
import torch

from harness.errors import ConfigError
from harness.judging.compare import FLOAT64_EAGER
from harness.model.case import build_case
from harness.model.config import RnnConfig
from harness.model.factories import MODEL_PATH_VARIABLE
from harness.store.golden import GoldenStore
from tests.conftest import REPO, CliResult

Cli = Callable[..., CliResult]

EXAMPLE = REPO / "examples" / "hello-char-model"
EXAMPLE_IDS = [f"hello-char-model.build{variant}-lstm-h16-l2-{rest}" for variant, rest in (
    ("", "s0"), ("", "grad-s0"), ("", "train20-s0"), ("", "gauss-t6b4-s0"), ("-with-lookup", "s0"),
    ("-with-lookup", "grad-s0"))]
FAST = ("--backend", "eager", "--backend", "torchscript-script", "--backend", "onnxruntime-legacy")
MODULE = "um_tiny"
REFERENCE = f"{MODULE}:build"
CONFIG_ID = "um-tiny.build-gru-h6-s0"

# A user's model module; UM_MODE breaks it in each way a user can, UM_SCALE changes its weights.
TINY = '''
import os

import torch
from torch import nn

MODE = os.environ.get("UM_MODE", "")
if MODE == "import":
    raise RuntimeError("broken at import")


class Tiny(nn.Module):
    output_names = ("scores", "h_n")

    def __init__(self, hidden):
        super().__init__()
        self.gru = nn.GRU(4, hidden)
        self.head = nn.Linear(hidden, 4)

    def forward(self, x):
        out, h_n = self.gru(x)
        return self.head(out), h_n


class Failing(Tiny):
    def forward(self, x):
        raise RuntimeError("forward broke")


class Dict(Tiny):
    def forward(self, x):
        return {"scores": x}


class Pair(nn.Module):  # returns a tuple, names none of it
    def __init__(self, hidden):
        super().__init__()
        self.gru = nn.GRU(4, hidden)

    def forward(self, x):
        return self.gru(x)


def build(config):
    mode = os.environ.get("UM_MODE", "")
    if mode == "raise":
        raise ValueError("no such width")
    if mode == "not-a-module":
        return 42
    model = {"forward": Failing, "dict": Dict}.get(mode, Tiny)(config.hidden_size)
    with torch.no_grad():
        model.head.weight.mul_(float(os.environ.get("UM_SCALE", "1")))
    if mode == "names":
        model.output_names = ("only",)
    return model


def pair(config):
    return Pair(config.hidden_size)


def single(config):  # one tensor
    return nn.Linear(4, 3)


if MODE == "absent":
    del build
elif MODE == "not-callable":
    build = 3
'''

SUITE = f'''[suite]
name = "um"

[defaults]
model = "{REFERENCE}"
cell = "gru"
hidden_size = 6

[[case]]
input = "hello"

[[case]]
model = "{MODULE}:pair"

[[case]]
model = "{MODULE}:single"
'''


@pytest.fixture
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model path, sys.path and the models' modules put back after the test (and no bytecode written:
    a rewritten module is never read from a stale .pyc)."""
    for name in (MODEL_PATH_VARIABLE, "UM_MODE", "UM_SCALE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for module in (MODULE, "hello_char_model"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


@pytest.fixture
def model_dir(tmp_path: Path, clean_imports: None) -> Path:
    """um_tiny.py and suite.toml in a directory of their own."""
    directory = tmp_path / "models"
    directory.mkdir()
    (directory / f"{MODULE}.py").write_text(TINY, encoding="utf-8")
    (directory / "suite.toml").write_text(SUITE, encoding="utf-8")
    return directory


def forget_module() -> None:
    """Import um_tiny afresh next time (as a new process would)."""
    sys.modules.pop(MODULE, None)
    importlib.invalidate_caches()


def files(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.mark.usefixtures("clean_imports")
def test_the_example_suite_runs_on_every_backend(cli: Cli, tmp_path: Path) -> None:
    golden = EXAMPLE / "golden"
    before = files(golden)
    report = tmp_path / "report.json"
    result = cli("run", "--suite", str(EXAMPLE / "suite.toml"), "--golden-dir", str(golden), "--json", str(report),
                 "-v")  # -v: the table and the distances to the reference
    assert result.exit_code == 0, result.out + result.err
    assert all(config_id in result.out for config_id in EXAMPLE_IDS)
    assert re.search(r"^Distance to (the )?float64 eager torch", result.out, re.MULTILINE)  # no NumPy oracle
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["configs"] == EXAMPLE_IDS
    backends = document["backends"]
    assert {"eager", "torchscript-script", "torch-export", "torch-compile", "onnxruntime-legacy",
            "onnxruntime-dynamo", "onnx-reference-legacy", "onnx-reference-dynamo"} <= set(backends)
    cells = {(cell["config"], cell["backend"]): cell for cell in document["cells"]}
    assert len(document["cells"]) == len(cells) == len(EXAMPLE_IDS) * len(backends)
    assert set(cells) == set(product(EXAMPLE_IDS, backends))
    for (config_id, backend), cell in cells.items():
        if backend == "eager":
            assert cell["verdict"] == "identical", (config_id, cell)
            assert cell["oracle"]["reference"] == FLOAT64_EAGER == "float64 eager torch (no oracle)"
            assert cell["past"]["status"] == "unchanged"
        elif backend.startswith("onnx") and ("-grad-" in config_id or "-train20-" in config_id):
            assert cell["verdict"] == "unsupported", (config_id, backend)
            assert "no autograd" in cell["reason"]
        elif backend == "torch-compile":
            assert cell["verdict"] == "slow"
        else:
            assert cell["verdict"] in ("identical", "close"), (config_id, backend, cell["verdict"])
    assert files(golden) == before  # a run writes nothing into the golden directory


def test_a_factory_next_to_its_suite_records_and_runs(cli: Cli, model_dir: Path, tmp_path: Path) -> None:
    suite, golden = model_dir / "suite.toml", tmp_path / "golden"
    recorded = cli("record", "--suite", str(suite), "--golden-dir", str(golden), *FAST)
    assert recorded.exit_code == 0, recorded.out + recorded.err
    # found through the suite's own directory, which loading the suite added to the model path
    assert str(model_dir.resolve()) in os.environ[MODEL_PATH_VARIABLE].split(os.pathsep)
    store = GoldenStore(golden)
    tensors = {config_id: list(store.load(config_id).tensors) for config_id in store.stored_ids()}
    assert tensors == {CONFIG_ID: ["scores", "h_n"], "um-tiny.pair-gru-h6-s0": ["output_0", "output_1"],
                       "um-tiny.single-gru-h6-s0": ["output"]}
    manifest = json.loads(store.manifest_path(CONFIG_ID).read_text(encoding="utf-8"))
    assert list(manifest["tensors"]) == ["scores", "h_n"]
    assert manifest["config"]["model"] == REFERENCE
    report = tmp_path / "report.json"
    result = cli("run", "--suite", str(suite), "--golden-dir", str(golden), *FAST, "--json", str(report))
    assert result.exit_code == 0, result.out + result.err
    cells = json.loads(report.read_text(encoding="utf-8"))["cells"]
    assert len(cells) == 9
    assert {cell["verdict"] for cell in cells if cell["backend"] != "onnxruntime-legacy"} == {"identical"}
    assert {cell["verdict"] for cell in cells} <= {"identical", "close"}
    # The stored artifacts replay too, a single-tensor model's included (its one output is not split in rows).
    replayed = cli("replay", "--suite", str(suite), "--golden-dir", str(golden), *FAST[2:], "--json", str(report))
    assert replayed.exit_code == 0, replayed.out
    verdicts = {(cell["config"], cell["backend"]): cell["verdict"]
                for cell in json.loads(report.read_text(encoding="utf-8"))["cells"]}
    assert verdicts[("um-tiny.single-gru-h6-s0", "torchscript-script")] == "identical"
    assert verdicts[("um-tiny.single-gru-h6-s0", "onnxruntime-legacy")] in ("identical", "close")


def test_torch_export_takes_a_model_that_returns_one_tensor(cli: Cli, model_dir: Path, tmp_path: Path) -> None:
    """The round trip check zipped the output names with the returned tensor itself, walking its rows:
    `zip() argument 2 is longer than argument 1` on every single-tensor model."""
    suite, golden = model_dir / "suite.toml", tmp_path / "golden"
    single = ("--config", "um-tiny.single-gru-h6-s0", "--backend", "eager,torch-export")
    recorded = cli("record", "--suite", str(suite), "--golden-dir", str(golden), *single)
    assert recorded.exit_code == 0, recorded.out + recorded.err
    report = tmp_path / "report.json"
    result = cli("run", "--suite", str(suite), "--golden-dir", str(golden), *single, "--json", str(report))
    assert result.exit_code == 0, result.out + result.err
    verdicts = {cell["backend"]: cell["verdict"] for cell in json.loads(report.read_text(encoding="utf-8"))["cells"]}
    assert verdicts == {"eager": "identical", "torch-export": "identical"}


CELL_LOOP = """
import torch
from torch import nn


class CellLoop(nn.Module):
    # Two LSTMCells stepped in Python, as time-series models are written: no fused recurrent op anywhere.
    output_names = ("output",)

    def __init__(self, hidden):
        super().__init__()
        self.first = nn.LSTMCell(4, hidden)
        self.second = nn.LSTMCell(hidden, hidden)

    def forward(self, x):
        h1 = c1 = torch.zeros(x.shape[1], self.first.hidden_size, dtype=x.dtype)
        h2 = c2 = torch.zeros(x.shape[1], self.second.hidden_size, dtype=x.dtype)
        steps = []
        for step in x.unbind(0):
            h1, c1 = self.first(step, (h1, c1))
            h2, c2 = self.second(h1, (h2, c2))
            steps.append(h2)
        return torch.stack(steps)


def build(config):
    return CellLoop(config.hidden_size)
"""


def test_torch_compile_of_a_cell_loop_model_is_compiled_not_a_false_error(cli: Cli, tmp_path: Path,
                                                                       clean_imports: None) -> None:
    """Dynamo captures the unrolled LSTMCell loop in one graph with no break: that is compiled, although no
    fused recurrent op appears (it was ERROR "the recurrence ran outside the compiled graph")."""
    (tmp_path / "cell_loop.py").write_text(CELL_LOOP, encoding="utf-8")
    suite = tmp_path / "suite.toml"
    suite.write_text('[suite]\nname = "cells"\n\n[[case]]\nmodel = "cell_loop:build"\nhidden_size = 6\n',
                     encoding="utf-8")
    report = tmp_path / "report.json"
    result = cli("check", "--suite", str(suite), "--backend", "eager,torch-compile", "--all", "--json", str(report))
    cells = {cell["backend"]: cell for cell in json.loads(report.read_text(encoding="utf-8"))["cells"]}
    assert cells["torch-compile"]["verdict"] in ("identical", "close"), cells["torch-compile"]["reason"]
    assert result.exit_code == 0, result.out + result.err


FAILURES = [
    ("gone", f"cannot import {MODULE}: ModuleNotFoundError: No module named '{MODULE}'"),
    ("import", f"cannot import {MODULE}: RuntimeError: broken at import"),
    ("absent", f"{MODULE} has no callable 'build'"),
    ("not-callable", f"{MODULE} has no callable 'build'"),
    ("raise", f"the factory failed for {CONFIG_ID}: ValueError: no such width"),
    ("not-a-module", "the factory returned int, not a torch.nn.Module"),
    ("forward", f"its forward failed on {CONFIG_ID}'s inputs [(3, 5, 4)]: RuntimeError: forward broke"),
    ("dict", "forward must return a tensor or (nested) tuples of tensors, got dict"),
    ("names", "output_names ('only',) must name each of its 2 output(s) with letters, digits, '_', '.' or '-'"),
]


@pytest.mark.parametrize(("mode", "message"), FAILURES, ids=[mode for mode, _ in FAILURES])
def test_a_broken_model_is_one_error_line_naming_it(cli: Cli, model_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, mode: str, message: str) -> None:
    suite, golden = model_dir / "suite.toml", tmp_path / "golden"
    select = ("--suite", str(suite), "--config", CONFIG_ID)
    recorded = cli("record", *select, "--golden-dir", str(golden), "--reference-only")
    assert recorded.exit_code == 0, recorded.out + recorded.err
    forget_module()
    if mode == "gone":
        (model_dir / f"{MODULE}.py").unlink()
    else:
        monkeypatch.setenv("UM_MODE", mode)
    expected = f"harness: error: model '{REFERENCE}': {message}"
    (tmp_path / "empty").mkdir()
    for command, directory in (("run", golden), ("record", tmp_path / "empty"), ("record", tmp_path / "new")):
        result = cli(command, *select, "--golden-dir", str(directory), "--backend", "eager")
        assert (result.exit_code, result.out, result.err.splitlines()) == (2, "", [expected]), command
    assert not (tmp_path / "new").exists()  # a record that fails creates no directory, and says it creates none


def test_the_factory_is_called_under_the_configs_seed(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RnnConfig(model=REFERENCE, cell="gru", hidden_size=6, seed=3)
    with pytest.raises(ConfigError, match=f"No module named '{MODULE}'"):
        build_case(config)  # not on sys.path, not on the model path
    monkeypatch.setenv(MODEL_PATH_VARIABLE, str(model_dir))
    state = torch.random.get_rng_state()
    first, again = build_case(config), build_case(config)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left as it was
    assert first.weights_sha256 == again.weights_sha256
    assert build_case(dataclasses.replace(config, seed=4)).weights_sha256 != first.weights_sha256
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        by_hand = importlib.import_module(MODULE).build(config)
    built = first.module.state_dict()
    assert list(built) == list(by_hand.state_dict())
    assert all(torch.equal(built[name], tensor) for name, tensor in by_hand.state_dict().items())
    assert not first.module.training
    assert first.forward_names == first.output_names == ["scores", "h_n"]
    wide = build_case(dataclasses.replace(config, dtype="float64"))
    assert {parameter.dtype for parameter in wide.module.parameters()} == {torch.float64}
    assert build_case(dataclasses.replace(config, model=f"{MODULE}:pair")).forward_names == ["output_0", "output_1"]
    assert build_case(dataclasses.replace(config, model=f"{MODULE}:single")).forward_names == ["output"]


@pytest.mark.usefixtures("clean_imports")
def test_the_plugin_runs_the_example_suite(pytester: pytest.Pytester) -> None:
    golden = pytester.path / "golden"
    shutil.copytree(EXAMPLE / "golden", golden)
    junit = pytester.path / "junit.xml"
    # in a subprocess: an in-process run drops the modules first imported inside it (onnx, torch.onnx), and
    # onnx's C extension cannot be imported twice in one process
    result = pytester.runpytest_subprocess("--harness", f"--harness-suite={EXAMPLE / 'suite.toml'}",
                                           f"--harness-golden-dir={golden}", "--harness-backend",
                                           "eager,onnxruntime-legacy", f"--junitxml={junit}", "-p", "no:cacheprovider",
                                           "-rx")
    result.assert_outcomes(passed=9, xfailed=3)  # ONNX Runtime takes no gradients and does not train
    names = {case.get("name") for case in ElementTree.parse(junit).iter("testcase")}
    assert names == {f"test_golden[{c}-{b}]" for c in EXAMPLE_IDS for b in ("eager", "onnxruntime-legacy")}
    result.stdout.fnmatch_lines(["*XFAIL*train20-s0-onnxruntime-legacy*no autograd*"])


@pytest.mark.parametrize("cache", [pytest.param(("--no-cache",), id="no-cache"),
                                   pytest.param((), id="cache")])  # the cache key holds the weights too
def test_changed_weights_drift_with_cause_weights_changed(cli: Cli, model_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          cache: tuple[str, ...]) -> None:
    suite, golden = model_dir / "suite.toml", tmp_path / "golden"
    select = ("--suite", str(suite), "--config", CONFIG_ID, "--golden-dir", str(golden), *FAST)
    recorded = cli("record", *select)
    assert recorded.exit_code == 0, recorded.out + recorded.err
    monkeypatch.setenv("UM_SCALE", "1.0001")  # the head's weights, scaled by 1 when recorded
    report = tmp_path / "report.json"
    result = cli("run", *select, *cache, "--json", str(report))
    assert result.exit_code == 1, result.out + result.err
    cells = json.loads(report.read_text(encoding="utf-8"))["cells"]
    assert [(cell["backend"], cell["verdict"], cell["cause"]) for cell in cells] == [
        (backend, "DRIFT", "weights changed") for backend in FAST[1::2]], result.out
    assert f"{CONFIG_ID} x eager: DRIFT (tolerance atol=2e-06 rtol=1e-05); cause: weights changed" in result.out
    # Neither the exporter nor the runtime is blamed for a change of weights, and the float64 reference (built
    # from today's weights) does not pretend to know which side moved.
    assert "exporter changed" not in result.out and "is the one away from" not in result.out
    assert f"{CONFIG_ID} x eager" in result.out and "float64 eager torch (no oracle): this result is" in result.out


def test_a_factory_returning_a_bare_rnn_runs_on_every_torch_backend(cli: Cli, tmp_path: Path) -> None:
    """A bare nn.GRU or nn.LSTM as the model: flattened and scriptable, with the RNN's own output names."""
    (tmp_path / "bare_models.py").write_text(
        "import torch\n\n"
        "def gru(config):\n    return torch.nn.GRU(4, config.hidden_size)\n\n"
        "def lstm(config):\n    return torch.nn.LSTM(4, config.hidden_size, num_layers=2)\n", encoding="utf-8")
    (tmp_path / "suite.toml").write_text(
        '[[case]]\nmodel = "bare_models:gru"\ncell = "gru"\nchecks = ["forward", "grad"]\n'
        '[[case]]\nmodel = "bare_models:lstm"\ncell = "lstm"\nnum_layers = 2\n', encoding="utf-8")
    select = ("--suite", str(tmp_path / "suite.toml"), "--golden-dir", str(tmp_path / "golden"), "--backend", "torch",
              "--backend", "onnxruntime-legacy")
    assert cli("record", *select).exit_code == 0
    report = tmp_path / "report.json"
    result = cli("run", *select, "--json", str(report))
    assert result.exit_code == 0, result.out
    verdicts = {(cell["config"], cell["backend"]): cell["verdict"] for cell in json.loads(report.read_text())["cells"]}
    assert verdicts[("bare-models.gru-h8-s0", "torchscript-script")] == "identical"
    assert verdicts[("bare-models.lstm-h8-l2-s0", "torchscript-script")] == "identical"
    assert verdicts[("bare-models.gru-h8-grad-s0", "torch-export")] == "identical"
    manifest = json.loads((tmp_path / "golden" / "bare-models.lstm-h8-l2-s0.json").read_text())
    assert list(manifest["tensors"]) == ["output", "h_n", "c_n"]


def test_a_typo_in_the_model_reference_stops_run_before_any_golden_is_looked_up(
        cli: Cli, model_dir: Path, tmp_path: Path) -> None:
    suite = model_dir / "typo.toml"
    suite.write_text(f'[[case]]\nmodel = "{MODULE}:biuld"\ncell = "gru"\n', encoding="utf-8")
    (tmp_path / "golden").mkdir()
    for command in ("run", "probe"):
        extra = ("--golden-dir", str(tmp_path / "golden")) if command == "run" else ()
        result = cli(command, "--suite", str(suite), *extra, "--backend", "eager")
        assert (result.exit_code, result.out) == (2, ""), command  # not a MISSING golden with a record hint
        assert result.err.splitlines() == [f"harness: error: model '{MODULE}:biuld': {MODULE} has no callable 'biuld'"]


def test_a_train_check_whose_model_gives_no_logits_is_one_line_at_record(cli: Cli, model_dir: Path,
                                                                       tmp_path: Path) -> None:
    suite = model_dir / "train.toml"
    suite.write_text(f'[[case]]\nmodel = "{MODULE}:pair"\ncell = "gru"\nhidden_size = 16\ncheck = "train"\n'
                     'train_steps = 3\n', encoding="utf-8")
    result = cli("record", "--suite", str(suite), "--golden-dir", str(tmp_path / "golden"), "--backend", "eager")
    assert result.exit_code == 2 and "Traceback" not in result.out + result.err
    assert result.err.splitlines() == [
        f"harness: error: model '{MODULE}:pair': check 'train' needs its first output to be logits over h/e/l/o "
        "(last dimension 4), got shape (4, 3, 16)"]


def test_a_changed_architecture_is_shape_with_its_cause_and_no_layout_guess(
        cli: Cli, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite, golden = model_dir / "grad.toml", tmp_path / "golden"
    suite.write_text(f'[[case]]\nmodel = "{REFERENCE}"\ncell = "gru"\nhidden_size = 6\ncheck = "grad"\n',
                     encoding="utf-8")
    select = ("--suite", str(suite), "--golden-dir", str(golden), "--backend", "eager")
    assert cli("record", *select).exit_code == 0
    forget_module()
    (model_dir / f"{MODULE}.py").write_text(TINY.replace("nn.Linear(hidden, 4)", "nn.Linear(hidden, 5)"),
                                            encoding="utf-8")
    result = cli("run", *select)
    assert result.exit_code == 1
    assert "um-tiny.build-gru-h6-grad-s0 x eager: SHAPE (tolerance atol=2e-06 rtol=1e-05); cause: weights changed" \
        in result.out
    assert "grad.head.weight" in result.out and "proj_size" not in result.out  # no RNN layout story for it
    assert "is the one away from" not in result.out  # today's float64 reference cannot judge the golden
