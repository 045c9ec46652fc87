"""Backend families: `--backend torch` and `--backend onnx` name every backend of their kind (CPU variants),
and `harness list --backends` shows each backend with its availability, families and known limitations."""

from __future__ import annotations

from collections.abc import Callable

from harness.backends import backend_names, expand_backend_names
from tests.conftest import CliResult


def test_torch_and_onnx_name_every_backend_of_their_kind() -> None:
    known = backend_names()
    torch_family = ["eager", "torchscript-script", "torchscript-trace", "torch-export", "torch-compile"]
    assert expand_backend_names(["torch"]) == [name for name in torch_family if name in known]
    assert expand_backend_names(["onnx"]) == ["onnxruntime-legacy", "onnxruntime-dynamo", "onnx-reference-legacy",
                                              "onnx-reference-dynamo"]
    assert expand_backend_names(["onnxruntime"]) == ["onnxruntime-legacy", "onnxruntime-dynamo"]
    assert expand_backend_names(["onnx", "onnxruntime-legacy", "eager-cuda"]) == [
        *expand_backend_names(["onnx"]), "eager-cuda"]  # no duplicates; CUDA variants only by name


def test_a_family_runs_as_its_members(cli: Callable[..., CliResult]) -> None:
    result = cli("run", "--backend", "onnx", "--config", "rnn-h8-s0", "--quiet")
    assert result.exit_code == 0, result.out + result.err
    lines = result.out.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("backend  "))  # one line per backend
    end = lines.index("", start)
    assert [line.split()[0] for line in lines[start + 1:end]] == expand_backend_names(["onnx"])


def test_list_backends_shows_availability_families_and_limitations(cli: Callable[..., CliResult]) -> None:
    result = cli("list", "--backends")
    assert result.exit_code == 0, result.err
    out = result.out
    assert "eager  (available; default; family torch)" in out
    assert "onnxruntime-legacy  (available; default; family onnx; stores onnx artifacts)" in out
    assert "eager-cuda  (unavailable here: no CUDA device (torch.cuda.is_available() is False); not run by default)" \
        in out
    assert ("  unsupported on 4 configs (lstm-h8-p4-s0, lstm-h8-l2-bi-p4-s0, lstm-h8-p6-h0rand-s0, lstm-h8-p4-f64-s0): "
            "the legacy ONNX exporter cannot export LSTM with projections (proj_size)") in out
    assert "slow, left out without --all: rnn-h8-t200b2-s0" in out
