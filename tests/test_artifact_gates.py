"""The artifact gates (harness.store.gates): every stored artifact passes and its manifest's structure is
the one recomputed from its bytes; each attack of issue 17 is crafted for real here and refused with one
line, and, planted in a copy of a golden with its manifest re-sealed, `harness replay` refuses it without
running the planted code."""

from __future__ import annotations

import hashlib
import io
import json
import resource
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from harness.backends.base import Artifact
from harness.errors import GoldenError
from harness.session.artifacts import stored_entry
from harness.store.artifacts import ArtifactEntry, artifact_file_name, read_artifact
from harness.store.gates import verify_artifact
from harness.store.gates.onnx_structure import OnnxStructure, onnx_structure

REPO = Path(__file__).resolve().parent.parent
GOLDEN_DIRS = (REPO / "golden", REPO / "examples" / "hello-char-model" / "golden")
HARNESS = (sys.executable, "-m", "harness")  # the interpreter running the tests (a venv, tox or nox)
CONFIG = "lstm-h8-s0"


def stored_artifacts() -> list[tuple[Path, dict[str, Any], bool]]:
    """(artifact path, its manifest entry, built-in RNN) for every artifact the checkout stores."""
    found = []
    for root in GOLDEN_DIRS:
        for manifest in sorted(root.glob("*.json")):
            document = json.loads(manifest.read_text())
            for entry in document.get("artifacts", {}).values():
                found.append((root / "artifacts" / entry["file"], entry, not document["config"].get("model")))
    return found


def stored(kind: str) -> bytes:
    entry = json.loads((REPO / "golden" / f"{CONFIG}.json").read_text())["artifacts"]
    name = next(item["file"] for item in entry.values() if item["kind"] == kind)
    return (REPO / "golden" / "artifacts" / name).read_bytes()


def refusal(kind: str, data: bytes, *, built_in_rnn: bool = True) -> str:
    with pytest.raises(GoldenError) as caught:
        verify_artifact(kind, data, where="planted", built_in_rnn=built_in_rnn)
    message = caught.value.message
    assert "\n" not in message and message.startswith("planted: "), message
    return message


def test_every_stored_artifact_passes_and_its_structure_is_the_manifests() -> None:
    artifacts = stored_artifacts()
    assert len(artifacts) > 400
    for path, entry, built_in_rnn in artifacts:
        facts = verify_artifact(entry["kind"], path.read_bytes(), where=str(path), built_in_rnn=built_in_rnn)
        assert facts.recurrence, path
        if entry["kind"] == "onnx":
            assert facts.structure == OnnxStructure.from_dict(entry["structure"]).to_dict(), path


# --- the attacks, crafted -----------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates the marker file: what a use_pickle weight would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({self.marker!r}, 'w').close()",)


def pickled_weight_archive(marker: Path) -> bytes:
    """A real .pt2 whose first weight is marked use_pickle and replaced by a pickle that runs code."""
    source = zipfile.ZipFile(io.BytesIO(stored("torch-export")))
    members = {info.filename: source.read(info) for info in source.infolist()}
    config_name = next(name for name in members if name.endswith("model_weights_config.json"))
    config = json.loads(members[config_name])
    entry = next(iter(config["config"].values()))
    entry["use_pickle"] = True
    members[config_name] = json.dumps(config).encode()
    payload = io.BytesIO()
    torch.save(_Payload(marker), payload)
    members[f"archive/data/weights/{entry['path_name']}"] = payload.getvalue()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name, content in members.items():
            target.writestr(name, content)
    return buffer.getvalue()


class FileReader(torch.nn.Module):
    """An LSTM module that maps a file (creating it) on every forward: what a hostile TorchScript does."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 8)
        self.marker = marker

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        leaked = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        output, (h_n, c_n) = self.rnn(x)
        return output + leaked.sum().float(), h_n, c_n


def from_file_archive(marker: Path) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.script; the attack still works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(FileReader(str(marker))), buffer)
    return buffer.getvalue()


def external_data_model(location: str) -> bytes:
    model = onnx.load_from_string(stored("onnx"))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    del tensor.float_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    return model.SerializeToString()


def foreign_domain_model() -> bytes:
    model = onnx.load_from_string(stored("onnx"))
    model.opset_import.add(domain="com.evil", version=1)
    model.graph.node.append(helper.make_node("Steal", ["x"], ["stolen"], domain="com.evil"))
    return model.SerializeToString()


def constant_model(outputs: dict[str, np.ndarray], *, decoy_lstm: bool = False) -> bytes:
    """A model with the real model's input that outputs the golden's tensors as constants."""
    real = onnx.load_from_string(stored("onnx"))
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, f"{name}_value"))
             for name, array in outputs.items()]
    initializers = []
    if decoy_lstm:  # a recurrence that runs on the input and whose result is thrown away
        initializers = [numpy_helper.from_array(np.zeros((1, 32, 4), np.float32), "W"),
                        numpy_helper.from_array(np.zeros((1, 32, 8), np.float32), "R")]
        nodes.append(helper.make_node("LSTM", [real.graph.input[0].name, "W", "R"], ["unused"], hidden_size=8))
    graph = helper.make_graph(nodes, "constant", list(real.graph.input),
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape))
                               for name, array in outputs.items()], initializer=initializers)
    return helper.make_model(graph, opset_imports=list(real.opset_import)).SerializeToString()


def endless_loop_model() -> bytes:
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])])
    trips = helper.make_tensor("t", TensorProto.INT64, [], [2**63 - 1])
    nodes = [helper.make_node("Constant", [], ["trips"], value=trips),
             helper.make_node("Constant", [], ["go"], value=helper.make_tensor("g", TensorProto.BOOL, [], [True])),
             helper.make_node("Loop", ["trips", "go"], [], body=body, name="forever"),
             helper.make_node("Identity", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "loop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def allocation_bomb_model() -> bytes:
    """984 bytes or so that ask a runtime for 2 GiB of zeros."""
    shape = helper.make_tensor("s", TensorProto.INT64, [1], [2**29])  # float32 zeros: 2 GiB
    nodes = [helper.make_node("Constant", [], ["shape"], value=shape),
             helper.make_node("ConstantOfShape", ["shape"], ["bomb"]),
             helper.make_node("ReduceSum", ["bomb"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    graph = helper.make_graph(nodes, "bomb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def with_member(data: bytes, name: str, content: bytes = b"x") -> bytes:
    buffer = io.BytesIO(data[:])
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def golden_outputs() -> dict[str, np.ndarray]:
    manifest = json.loads((REPO / "golden" / f"{CONFIG}.json").read_text())
    with np.load(REPO / "golden" / manifest["tensors_file"]) as stored_tensors:
        return {name: stored_tensors[name] for name in manifest["tensors"]}


def test_a_pt2_with_a_pickled_weight_is_refused(tmp_path: Path) -> None:
    assert "use_pickle" in refusal("torch-export", pickled_weight_archive(tmp_path / "ran"))
    assert not (tmp_path / "ran").exists()


def test_a_torchscript_module_that_maps_a_file_is_refused(tmp_path: Path) -> None:
    assert "torch.from_file" in refusal("torchscript", from_file_archive(tmp_path / "leak"))
    assert not (tmp_path / "leak").exists()


def test_an_onnx_model_with_external_data_under_the_working_directory_is_refused() -> None:
    assert "external file ('.git/config')" in refusal("onnx", external_data_model(".git/config"))


def test_an_unknown_onnx_domain_is_refused() -> None:
    assert "com.evil" in refusal("onnx", foreign_domain_model())


def test_a_constant_model_outputting_the_goldens_tensors_is_refused() -> None:
    outputs = golden_outputs()
    assert "contains no recurrence" in refusal("onnx", constant_model(outputs))
    assert "depends on no input" in refusal("onnx", constant_model(outputs, decoy_lstm=True))


def test_a_loop_of_2_63_trips_is_refused() -> None:
    assert f"would run {2**63 - 1} trips" in refusal("onnx", endless_loop_model(), built_in_rnn=False)


def test_a_2_gb_constant_of_shape_is_refused_fast_without_allocating() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    assert "over the bound" in refusal("onnx", allocation_bomb_model(), built_in_rnn=False)
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: under 100 MiB more


@pytest.mark.parametrize("kind", ["torchscript", "torch-export"])
def test_an_archive_member_leading_out_is_refused(kind: str) -> None:
    assert "not a plain relative name" in refusal(kind, with_member(stored(kind), "archive/../../escaped.py"))


@pytest.mark.parametrize("kind", ["torchscript", "torch-export"])
def test_an_archive_member_torch_never_writes_is_refused(kind: str) -> None:
    assert "is not one torch" in refusal(kind, with_member(stored(kind), "archive/extra/payload.pkl"))


def test_guards_code_in_a_pt2_is_refused() -> None:
    source = zipfile.ZipFile(io.BytesIO(stored("torch-export")))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename.endswith("models/model.json"):
                program = json.loads(content)
                program["guards_code"] = ["__import__('os').system('true')"]
                content = json.dumps(program).encode()
            target.writestr(info, content)
    assert "guards_code" in refusal("torch-export", buffer.getvalue())


def test_a_fresh_export_the_gate_refuses_is_a_golden_error_at_record_time() -> None:
    with pytest.raises(GoldenError, match="contains no recurrence"):
        stored_entry(CONFIG, "onnxruntime-legacy", Artifact(kind="onnx", data=constant_model(golden_outputs()),
                                                            producer={}), built_in_rnn=True)


def test_a_malformed_structure_entry_is_one_golden_error() -> None:
    entry = {"file": "x.onnx", "kind": "onnx", "sha256": "0" * 64, "bytes": 1, "structure": {"opsets": 1}}
    with pytest.raises(GoldenError, match="malformed onnx structure"):
        ArtifactEntry.from_dict("onnxruntime-legacy", entry, where="m.json")


# --- planted in a golden directory --------------------------------------------------------------------

def golden_copy(tmp_path: Path, config_id: str = CONFIG) -> Path:
    """The few files of one golden: its manifest, its tensors and its artifacts."""
    copy = tmp_path / "golden"
    (copy / "artifacts").mkdir(parents=True)
    manifest = json.loads((REPO / "golden" / f"{config_id}.json").read_text())
    shutil.copy2(REPO / "golden" / f"{config_id}.json", copy)
    shutil.copy2(REPO / "golden" / manifest["tensors_file"], copy)
    for entry in manifest["artifacts"].values():
        shutil.copy2(REPO / "golden" / "artifacts" / entry["file"], copy / "artifacts")
    return copy


def plant(copy: Path, backend: str, data: bytes, config_id: str = CONFIG, *, structure: bool = True) -> None:
    """Replace one backend's artifact and re-seal its manifest entry as an attacker would."""
    path = copy / f"{config_id}.json"
    manifest = json.loads(path.read_text())
    entry = manifest["artifacts"][backend]
    sha256 = hashlib.sha256(data).hexdigest()
    entry.update(file=artifact_file_name(config_id, entry["kind"], sha256), sha256=sha256, bytes=len(data))
    if entry["kind"] == "onnx" and structure:
        entry["structure"] = onnx_structure(data).to_dict()
    (copy / "artifacts" / entry["file"]).write_bytes(data)
    path.write_text(json.dumps(manifest, indent=2))


def replay(copy: Path, backend: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, "replay", "--golden-dir", str(copy), "--config", CONFIG, "--backend",
                           backend], capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def assert_refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode in (1, 2), output
    assert "Traceback" not in output, output
    assert any(words in line for line in output.splitlines()), output


@pytest.mark.parametrize(("backend", "craft", "words"), [
    ("torch-export", pickled_weight_archive, "use_pickle"),
    ("torchscript-script", from_file_archive, "torch.from_file"),
])
def test_replay_refuses_planted_code_without_running_it(tmp_path: Path, backend: str,
                                                        craft: Callable[[Path], bytes], words: str) -> None:
    marker = tmp_path / "planted-code-ran"
    copy = golden_copy(tmp_path)
    plant(copy, backend, craft(marker))
    assert_refused(replay(copy, backend, tmp_path), words)
    assert not marker.exists()


def test_replay_of_a_swapped_constant_model_fails(tmp_path: Path) -> None:
    copy = golden_copy(tmp_path)
    plant(copy, "onnxruntime-legacy", constant_model(golden_outputs()))
    assert_refused(replay(copy, "onnxruntime-legacy", tmp_path), "contains no recurrence")


def test_replay_refuses_external_data_reading_a_file_below_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(np.ones(1024, np.float32).tobytes())
    copy = golden_copy(tmp_path)
    plant(copy, "onnxruntime-legacy", external_data_model("secret.bin"), structure=False)
    assert_refused(replay(copy, "onnxruntime-legacy", tmp_path), "external file")


def test_replay_refuses_a_manifest_structure_that_is_not_the_bytes(tmp_path: Path) -> None:
    copy = golden_copy(tmp_path)
    path = copy / f"{CONFIG}.json"
    manifest = json.loads(path.read_text())
    manifest["artifacts"]["onnxruntime-legacy"]["structure"]["op_histogram"]["Tanh"] = 7
    path.write_text(json.dumps(manifest, indent=2))
    assert_refused(replay(copy, "onnxruntime-legacy", tmp_path), "the golden is corrupt")


def test_replay_of_a_malformed_structure_is_one_line(tmp_path: Path) -> None:
    copy = golden_copy(tmp_path)
    path = copy / f"{CONFIG}.json"
    manifest = json.loads(path.read_text())
    manifest["artifacts"]["onnxruntime-legacy"]["structure"]["recurrent_nodes"] = [{"op_type": "LSTM"}]
    path.write_text(json.dumps(manifest, indent=2))
    assert_refused(replay(copy, "onnxruntime-legacy", tmp_path), "malformed onnx structure")


def test_read_artifact_runs_the_gate(tmp_path: Path) -> None:
    copy = golden_copy(tmp_path)
    plant(copy, "onnxruntime-legacy", constant_model(golden_outputs()))
    manifest = json.loads((copy / f"{CONFIG}.json").read_text())
    entry = ArtifactEntry.from_dict("onnxruntime-legacy", manifest["artifacts"]["onnxruntime-legacy"])
    assert read_artifact(copy, copy / f"{CONFIG}.json", CONFIG, entry, built_in_rnn=False)
    with pytest.raises(GoldenError, match="contains no recurrence"):
        read_artifact(copy, copy / f"{CONFIG}.json", CONFIG, entry, built_in_rnn=True)


def shape_fed_zeros(*, scaled: bool) -> bytes:
    """zeros([2, <dim 0 of x>]) as the legacy exporter builds an initial state, or with that dimension
    multiplied by 2**20 first (arithmetic on a shape: no longer bounded by a tensor that exists)."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["dim"]),
             helper.make_node("Mul", ["dim", "big"], ["scaled"]),
             helper.make_node("Unsqueeze", ["scaled" if scaled else "dim", "axes"], ["dim1"]),
             helper.make_node("Concat", ["two", "dim1"], ["zeros_shape"], axis=0),
             helper.make_node("ConstantOfShape", ["zeros_shape"], ["y"])]
    graph = helper.make_graph(nodes, "zeros", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("zero", TensorProto.INT64, [], [0]),
                               helper.make_tensor("big", TensorProto.INT64, [], [2**20]),
                               helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
                               helper.make_tensor("two", TensorProto.INT64, [1], [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_zeros_sized_by_an_existing_dimension_are_bounded_and_by_arithmetic_are_not() -> None:
    """A dimension of a tensor that exists (the packed legacy exports' initial state) is linear in memory
    already held; arithmetic on it is not, so that model must run under bounds."""
    plain = verify_artifact("onnx", shape_fed_zeros(scaled=False), where="plain.onnx", built_in_rnn=False)
    scaled = verify_artifact("onnx", shape_fed_zeros(scaled=True), where="scaled.onnx", built_in_rnn=False)
    assert plain.bounded and plain.unbounded_reason == ""
    assert not scaled.bounded and "ConstantOfShape" in scaled.unbounded_reason
    packed = "gru-h8-gauss-t6b4-len3_6_2_5-s0"
    entry = json.loads((REPO / "golden" / f"{packed}.json").read_text())["artifacts"]["onnxruntime-legacy"]
    assert verify_artifact("onnx", (REPO / "golden" / "artifacts" / entry["file"]).read_bytes(), where="packed",
                           built_in_rnn=True).bounded


def golden_plus_zero_times_the_rnn(data: bytes, outputs: dict[str, np.ndarray]) -> bytes:
    """The real export, each output replaced by the golden's constant plus 0 x what the recurrence computed:
    a recurrence, and outputs that depend on the input in the graph, so the static gate lets it through."""
    model = onnx.load_from_string(data)
    graph = model.graph
    names = [value.name for value in graph.output]
    for node in graph.node:
        node.output[:] = [f"{name}__real" if name in names else name for name in node.output]
    graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "nought"))
    for name in names:
        graph.initializer.append(numpy_helper.from_array(outputs[name], f"{name}__golden"))
        graph.node.extend([helper.make_node("Mul", [f"{name}__real", "nought"], [f"{name}__nothing"]),
                           helper.make_node("Add", [f"{name}__golden", f"{name}__nothing"], [name])])
    return model.SerializeToString()


def plant_golden_plus_zero(tmp_path: Path) -> Path:
    copy = golden_copy(tmp_path)
    entry = json.loads((copy / f"{CONFIG}.json").read_text())["artifacts"]["onnxruntime-legacy"]
    data = golden_plus_zero_times_the_rnn((copy / "artifacts" / entry["file"]).read_bytes(), golden_outputs())
    assert verify_artifact("onnx", data, where="planted", built_in_rnn=True).recurrence  # the gate lets it in
    plant(copy, "onnxruntime-legacy", data)
    return copy


def test_replay_of_the_goldens_constants_plus_zero_times_the_rnn_fails(tmp_path: Path) -> None:
    """It reproduces the golden bitwise; on a second input its outputs stay put: ERROR, exit 1."""
    result = replay(plant_golden_plus_zero(tmp_path), "onnxruntime-legacy", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "does not compute this model" in output and "stay put when its whole input is drawn anew" in output


def test_run_of_the_goldens_constants_plus_zero_times_the_rnn_fails(tmp_path: Path) -> None:
    """`run` compares it with a fresh export on a second input: they agree on the golden's input only."""
    copy = plant_golden_plus_zero(tmp_path)
    result = subprocess.run([*HARNESS, "run", "--golden-dir", str(copy), "--config", CONFIG, "--backend",
                             "onnxruntime-legacy", "--no-cache"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "differs from a fresh export of the same weights" in output, output
