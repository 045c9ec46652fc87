"""The torch-export backend: bitwise eager on a spread of configs, the save/load round trip it checks,
artifacts that replay from their bytes alone, and the CLI's run, record and replay with it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.backends import get_backend
from harness.backends.base import Artifact
from harness.backends.capture import captured_upstream_messages
from harness.backends.torch_export import TorchExportBackend
from harness.backends.wrappers import flat_module_for
from harness.model.case import Case, build_case
from harness.model.config import RnnConfig
from tests.conftest import REPO, CliResult

SPREAD = [
    RnnConfig(),
    RnnConfig(cell="lstm", proj_size=4, initial_state="random"),
    RnnConfig(cell="gru", bidirectional=True, batch_first=True),
    RnnConfig(cell="lstm", dtype="float64"),
    RnnConfig(num_layers=2, dropout=0.5),
]
LSTM_RANDOM = RnnConfig(cell="lstm", initial_state="random")


def _export(config: RnnConfig) -> Artifact:
    with captured_upstream_messages():
        return TorchExportBackend().export(build_case(config))


def _eager(case: Case) -> dict[str, np.ndarray]:
    with captured_upstream_messages():  # LSTM with projections warns that oneDNN does not take it
        return get_backend("eager").prepare(case).run(case.inputs)


def _bitwise_equal(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> bool:
    return list(expected) == list(actual) and all(
        expected[name].dtype == actual[name].dtype and expected[name].shape == actual[name].shape
        and expected[name].tobytes() == actual[name].tobytes() for name in expected)


@pytest.mark.parametrize("config", SPREAD, ids=lambda config: config.id)
def test_outputs_are_bitwise_those_of_eager(config: RnnConfig) -> None:
    case = build_case(config)
    with captured_upstream_messages():
        actual = get_backend("torch-export").prepare(case).run(case.inputs)
    assert _bitwise_equal(_eager(case), actual)


def test_the_saved_program_computes_bitwise_what_the_program_in_memory_does() -> None:
    case = build_case(LSTM_RANDOM)
    examples = tuple(torch.from_numpy(array) for array in case.inputs.values())
    with captured_upstream_messages():
        program = torch.export.export(flat_module_for(case), examples)
        loaded = TorchExportBackend().load(TorchExportBackend().export(case), case.output_names)
    with torch.no_grad():
        in_memory = {name: tensor.numpy() for name, tensor in zip(case.output_names, program.module()(*examples),
                                                                   strict=True)}
    assert _bitwise_equal(in_memory, loaded.run(case.inputs))


class _Shifted(torch.nn.Module):
    """A loaded program whose h_n comes out moved: what a save/load that changed bits would give."""

    def __init__(self, inner: torch.nn.Module, shift: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self.shift = shift

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output, h_n, *rest = self.inner(*args)
        return (output, self.shift(h_n), *rest)


def _patch_load(monkeypatch: pytest.MonkeyPatch, shift: Callable[[torch.Tensor], torch.Tensor]) -> None:
    real_load = torch.export.load

    class ShiftedProgram:
        def __init__(self, program: Any) -> None:
            self.program = program

        def module(self) -> torch.nn.Module:
            return _Shifted(self.program.module(), shift)

    monkeypatch.setattr(torch.export, "load", lambda source: ShiftedProgram(real_load(source)))


def test_a_round_trip_that_changes_the_outputs_fails_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_load(monkeypatch, lambda h_n: h_n + 0.5)  # |h_n| < 1: every element moves by 0.5 (to 3 digits)
    with pytest.raises(RuntimeError) as raised:
        _export(RnnConfig())
    assert str(raised.value) == "torch.export.save/load round trip changed the outputs: h_n max abs 0.5"


def test_the_round_trip_is_checked_bitwise_not_within_a_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    def one_ulp(h_n: torch.Tensor) -> torch.Tensor:
        moved = h_n.clone()
        moved.view(-1)[0] = torch.nextafter(moved.view(-1)[0], torch.tensor(2.0, dtype=h_n.dtype))
        return moved

    _patch_load(monkeypatch, one_ulp)
    with pytest.raises(RuntimeError, match=r"round trip changed the outputs: h_n max abs [0-9.]+e-0[89]$"):
        _export(RnnConfig())


def test_a_stored_artifact_loads_from_its_bytes_alone_as_replay_does() -> None:
    case = build_case(LSTM_RANDOM)
    artifact = _export(LSTM_RANDOM)
    assert artifact.kind == "torch-export" and artifact.suffix == ".pt2" and artifact.data[:2] == b"PK"  # zip
    assert artifact.producer == {"exporter": "torch.export.export", "saved_with": "torch.export.save",
                                 "strict": False, "versions": {"torch": torch.__version__}}
    stored = Artifact(kind="torch-export", data=bytes(artifact.data),
                      producer=json.loads(json.dumps(artifact.producer)))
    backend = get_backend("torch-export")  # a fresh instance, as replay makes one
    assert isinstance(backend, TorchExportBackend)
    replayed = backend.load(stored, case.output_names).run(case.inputs)
    assert _bitwise_equal(_eager(case), replayed)


def test_the_saved_bytes_are_deterministic_and_name_no_path_of_this_machine() -> None:
    first, second = _export(SPREAD[1]), _export(SPREAD[1])
    assert first.data == second.data
    for machine_specific in (str(REPO).encode(), b"site-packages", b"harness/backends"):
        assert machine_specific not in first.data, machine_specific


def test_naming_the_backend_imports_no_torch() -> None:
    script = ("import sys\n"
              "from harness.backends import get_backend\n"
              "from harness.model.config import RnnConfig\n"
              "backend = get_backend('torch-export')\n"
              "backend.known_limitation(RnnConfig()), backend.is_slow(RnnConfig()), backend.export_options()\n"
              "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            check=True)
    assert result.stdout.strip() == "False"


def _cells(report: Path) -> dict[str, dict[str, Any]]:
    return {cell["config"]: cell for cell in json.loads(report.read_text())["cells"]}


def test_cli_run_is_identical_to_the_goldens(cli: Callable[..., CliResult], golden_copy: Callable[..., Path],
                                             tmp_path: Path) -> None:
    golden_dir = golden_copy("rnn-h8-s0", "lstm-h8-h0rand-s0")
    report = tmp_path / "run.json"
    result = cli("run", "--backend", "torch-export", "--config", "rnn-h8-s0", "--config", "lstm-h8-h0rand-s0",
                 "--golden-dir", str(golden_dir), "--json", str(report), "--quiet")
    assert result.exit_code == 0, result.out + result.err
    cells = _cells(report)
    assert sorted(cells) == ["lstm-h8-h0rand-s0", "rnn-h8-s0"]
    assert {cell["verdict"] for cell in cells.values()} == {"identical"}


def test_cli_record_stores_a_pt2_artifact_that_replays_identical(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir = golden_copy("rnn-h8-s0")
    recorded = cli("record", "--force", "--config", "rnn-h8-s0", "--backend", "torch-export",
                   "--golden-dir", str(golden_dir))
    assert recorded.exit_code == 0, recorded.out + recorded.err
    stored = list((golden_dir / "artifacts").glob("rnn-h8-s0.*.pt2"))
    assert len(stored) == 1 and stored[0].read_bytes()[:2] == b"PK"
    report = tmp_path / "replay.json"
    replayed = cli("replay", "--backend", "torch-export", "--config", "rnn-h8-s0", "--golden-dir", str(golden_dir),
                   "--json", str(report), "--quiet")
    assert replayed.exit_code == 0, replayed.out + replayed.err
    cell = _cells(report)["rnn-h8-s0"]
    assert (cell["backend"], cell["verdict"], cell["artifact_source"]) == ("torch-export", "identical", "stored")
