"""The ONNX structural fingerprint on real exports (legacy opset 17, dynamo opset 18) and on handmade protos,
its JSON round trip, and the wording of the diff between two fingerprints."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from harness.backends.capture import captured_upstream_messages
from harness.backends.wrappers import flat_module_for
from harness.judging.structure import (
    OnnxStructure,
    RecurrentNode,
    TensorSignature,
    onnx_structure,
    structure_diff,
)
from harness.model.case import build_case
from harness.model.config import RnnConfig

REPO = Path(__file__).resolve().parent.parent


def export(config: RnnConfig, *, dynamo: bool) -> bytes:
    """The model exactly as the harness's ONNX backends export it."""
    case = build_case(config)
    module, examples = flat_module_for(case), tuple(torch.from_numpy(array) for array in case.inputs.values())
    inputs, outputs = case.input_names, case.output_names
    with captured_upstream_messages():
        if dynamo:
            program = torch.onnx.export(module, examples, dynamo=True, opset_version=18,
                                        input_names=inputs, output_names=outputs)
            assert program is not None
            return bytes(program.model_proto.SerializeToString())
        buffer = io.BytesIO()
        torch.onnx.export(module, examples, buffer,  # type: ignore[arg-type]  # file-like objects are accepted
                          dynamo=False, opset_version=17, input_names=inputs, output_names=outputs)
        return buffer.getvalue()


@pytest.fixture(scope="module")
def legacy_gru() -> bytes:
    return export(RnnConfig(cell="gru"), dynamo=False)


@pytest.fixture(scope="module")
def dynamo_gru() -> bytes:
    return export(RnnConfig(cell="gru"), dynamo=True)


@pytest.fixture(scope="module")
def legacy_lstm() -> bytes:
    return export(RnnConfig(cell="lstm", num_layers=2, bidirectional=True), dynamo=False)


@pytest.fixture(scope="module")
def legacy_rnn() -> bytes:
    return export(RnnConfig(), dynamo=False)


@pytest.fixture(scope="module")
def dynamo_rnn() -> bytes:
    return export(RnnConfig(), dynamo=True)


def edited(model_bytes: bytes, edit: Callable[[onnx.ModelProto], None]) -> OnnxStructure:
    """The structure of a copy of the model after `edit` changed its proto in place."""
    model = onnx.load_from_string(model_bytes)
    edit(model)
    return onnx_structure(model.SerializeToString())


def set_attribute(node: onnx.NodeProto, name: str, value: object) -> None:
    kept = [attribute for attribute in node.attribute if attribute.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def recurrent_protos(model: onnx.ModelProto, op_type: str) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type == op_type]


# --- real exports -----------------------------------------------------------------------------------------

def test_legacy_gru_is_one_gru_node_with_torch_semantics(legacy_gru: bytes) -> None:
    structure = onnx_structure(legacy_gru)
    assert structure.recurrent_nodes == (RecurrentNode(op_type="GRU", attributes={
        "direction": "forward", "hidden_size": 8, "layout": 0, "linear_before_reset": 1}),)
    assert structure.opsets == {"ai.onnx": 17}
    assert structure.producer == f"pytorch {torch.onnx.producer_version}"
    assert structure.op_histogram["GRU"] == 1
    assert structure.total_ops == len(onnx.load_from_string(legacy_gru).graph.node)
    assert structure.inputs == (TensorSignature(name="input", elem_type="FLOAT", shape=(3, 5, 4)),)
    assert structure.outputs == (TensorSignature(name="output", elem_type="FLOAT", shape=(3, 5, 8)),
                                 TensorSignature(name="h_n", elem_type="FLOAT", shape=(1, 5, 8)))


def test_legacy_lstm_has_a_bidirectional_node_per_layer(legacy_lstm: bytes) -> None:
    structure = onnx_structure(legacy_lstm)
    node = RecurrentNode(op_type="LSTM", attributes={"direction": "bidirectional", "hidden_size": 8,
                                                      "input_forget": 0, "layout": 0})
    assert structure.recurrent_nodes == (node, node)
    assert [output.name for output in structure.outputs] == ["output", "h_n", "c_n"]
    assert structure.outputs[2].shape == (4, 5, 8)  # 2 layers x 2 directions


def test_spec_defaults_make_legacy_and_dynamo_gru_nodes_equal(legacy_gru: bytes, dynamo_gru: bytes) -> None:
    """The exporters write different attribute sets for the same GRU; filled-in defaults hide that."""
    raw = [{attribute.name for attribute in recurrent_protos(onnx.load_from_string(model), "GRU")[0].attribute}
           for model in (legacy_gru, dynamo_gru)]
    assert raw == [{"hidden_size", "linear_before_reset"},
                   {"hidden_size", "linear_before_reset", "direction", "layout"}]
    legacy, dynamo = onnx_structure(legacy_gru), onnx_structure(dynamo_gru)
    assert legacy.recurrent_nodes == dynamo.recurrent_nodes
    assert not [line for line in structure_diff(legacy, dynamo) if line.startswith("GRU")]


def test_dynamo_unrolls_a_plain_rnn_into_per_step_ops(dynamo_rnn: bytes) -> None:
    structure = onnx_structure(dynamo_rnn)
    assert structure.recurrent_nodes == ()
    assert "RNN" not in structure.op_histogram
    assert structure.op_histogram["Tanh"] == 3  # one per time step
    assert structure.total_ops > 10
    assert structure.opsets == {"ai.onnx": 18}
    assert structure.producer == f"pytorch {torch.__version__}"


def test_legacy_rnn_against_dynamo_rnn_says_the_node_is_gone(legacy_rnn: bytes, dynamo_rnn: bytes) -> None:
    legacy, dynamo = onnx_structure(legacy_rnn), onnx_structure(dynamo_rnn)
    lines = structure_diff(legacy, dynamo)
    assert lines[0] == f"RNN node gone: {dynamo.total_ops} ops instead"
    assert "opset ai.onnx 17 → 18" in lines
    assert "RNN 1 → 0" in lines[-1] and lines[-1].startswith("ops: ")
    assert structure_diff(dynamo, legacy)[0] == "new RNN node: 1 instead of 0"


@pytest.mark.parametrize("fixture", ["legacy_gru", "legacy_lstm", "dynamo_rnn"])
def test_dict_round_trip_through_json(fixture: str, request: pytest.FixtureRequest) -> None:
    structure = onnx_structure(request.getfixturevalue(fixture))
    text = json.dumps(structure.to_dict(), allow_nan=False)
    assert OnnxStructure.from_dict(json.loads(text)) == structure
    assert json.loads(text)["recurrent_nodes"] == [
        {"op_type": node.op_type, "attributes": node.attributes} for node in structure.recurrent_nodes]


def test_identical_models_have_no_diff(legacy_lstm: bytes) -> None:
    assert structure_diff(onnx_structure(legacy_lstm), onnx_structure(legacy_lstm)) == ()


# --- edits of a real proto --------------------------------------------------------------------------------

def test_flipping_linear_before_reset_is_one_line(legacy_gru: bytes) -> None:
    flipped = edited(legacy_gru, lambda model: set_attribute(recurrent_protos(model, "GRU")[0],
                                                             "linear_before_reset", 0))
    assert flipped.recurrent_nodes[0].attributes["linear_before_reset"] == 0
    assert structure_diff(onnx_structure(legacy_gru), flipped) == ("GRU.linear_before_reset 1 → 0",)


def test_dropping_linear_before_reset_reads_as_the_spec_default(legacy_gru: bytes) -> None:
    def drop(model: onnx.ModelProto) -> None:
        node = recurrent_protos(model, "GRU")[0]
        kept = [attribute for attribute in node.attribute if attribute.name != "linear_before_reset"]
        del node.attribute[:]
        node.attribute.extend(kept)

    assert structure_diff(onnx_structure(legacy_gru), edited(legacy_gru, drop)) == ("GRU.linear_before_reset 1 → 0",)


def test_several_nodes_of_one_type_are_numbered(legacy_lstm: bytes) -> None:
    changed = edited(legacy_lstm, lambda model: set_attribute(recurrent_protos(model, "LSTM")[1], "direction",
                                                              "forward"))
    assert structure_diff(onnx_structure(legacy_lstm), changed) == ("LSTM#2.direction bidirectional → forward",)


def test_opset_producer_and_signature_edits(legacy_gru: bytes) -> None:
    def pinned(model: onnx.ModelProto) -> None:
        model.producer_version = "2.13.0"

    def changed(model: onnx.ModelProto) -> None:
        model.producer_version = "2.14.0"
        model.opset_import[0].version = 18
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "batch"
        model.graph.input[0].type.tensor_type.shape.dim[2].Clear()
        model.graph.output[1].type.tensor_type.elem_type = TensorProto.DOUBLE

    assert structure_diff(edited(legacy_gru, pinned), edited(legacy_gru, changed)) == (
        "opset ai.onnx 17 → 18",
        "producer pytorch 2.13.0 → 2.14.0",
        "input input shape [3, 5, 4] → [3, 'batch', '?']",
        "output h_n FLOAT → DOUBLE",
    )


# --- handmade structures: the wording of each kind of line -----------------------------------------------

def gru(**attributes: object) -> RecurrentNode:
    return RecurrentNode(op_type="GRU", attributes={"direction": "forward", "hidden_size": 8, "layout": 0,
                                                    "linear_before_reset": 1, **attributes})


def signature(name: str, shape: tuple[int | str, ...] = (1, 5, 8), elem_type: str = "FLOAT") -> TensorSignature:
    return TensorSignature(name=name, elem_type=elem_type, shape=shape)


BASE = OnnxStructure(
    opsets={"ai.onnx": 17}, producer="pytorch 2.13.0", op_histogram={"Add": 5, "GRU": 1, "MatMul": 30},
    recurrent_nodes=(gru(),), inputs=(signature("input", (3, 5, 4)), signature("h0")),
    outputs=(signature("output", (3, 5, 8)), signature("h_n")),
)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"op_histogram": {"Add": 5, "GRU": 1, "MatMul": 32, "Tanh": 3}}, ("ops: MatMul 30 → 32, Tanh 0 → 3",)),
    ({"recurrent_nodes": (gru(clip=0.5),)}, ("GRU.clip absent → 0.5",)),
    ({"recurrent_nodes": (gru(activations=["Sigmoid", "Relu"]),)},
     ("GRU.activations absent → ['Sigmoid', 'Relu']",)),
    ({"recurrent_nodes": (gru(), gru(hidden_size=4))}, ("GRU nodes: 2 instead of 1",)),
    ({"recurrent_nodes": (gru(hidden_size=4), gru())}, ("GRU nodes: 2 instead of 1", "GRU#1.hidden_size 8 → 4")),
    ({"recurrent_nodes": (RecurrentNode(op_type="LSTM", attributes={}),) * 2},
     ("GRU node gone: 36 ops instead", "new LSTM node: 2 instead of 0")),
    ({"inputs": (signature("input", (3, 5, 4)), signature("h0"), signature("c0"))}, ("new input c0",)),
    ({"inputs": (signature("input", (3, 5, 4)),)}, ("input h0 gone",)),
    ({"inputs": (signature("h0"), signature("input", (3, 5, 4)))}, ("input order ['input', 'h0'] → ['h0', 'input']",)),
    ({"inputs": (signature("input", (3, 5, 4)), signature("h0", (1, "batch", 8)))},
     ("input h0 shape [1, 5, 8] → [1, 'batch', 8]",)),
    ({"outputs": (signature("output", (3, 5, 8)), signature("h_n", elem_type="DOUBLE"))},
     ("output h_n FLOAT → DOUBLE",)),
    ({"opsets": {"ai.onnx": 17, "com.microsoft": 1}}, ("new opset com.microsoft 1",)),
    ({"opsets": {}}, ("opset ai.onnx 17 gone",)),
    ({"producer": "pytorch 2.14.0"}, ("producer pytorch 2.13.0 → 2.14.0",)),
    ({"producer": ""}, ("producer pytorch 2.13.0 → (none)",)),
    ({"producer": "onnxscript 0.7"}, ("producer pytorch 2.13.0 → onnxscript 0.7",)),
])
def test_diff_wording(changes: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert structure_diff(BASE, dataclasses.replace(BASE, **changes)) == expected


def test_several_gone_nodes_are_counted() -> None:
    before = dataclasses.replace(BASE, recurrent_nodes=(gru(), gru()))
    after = dataclasses.replace(BASE, recurrent_nodes=())
    assert structure_diff(before, after) == ("2 GRU nodes gone: 36 ops instead",)


# --- handmade protos: nesting, domains, initializers ------------------------------------------------------

def nested_model() -> bytes:
    """An If with Tanh/Sigmoid branches, a GRU inside the then-branch, a local function, a contrib op."""
    then_branch = helper.make_graph([helper.make_node("Tanh", ["x"], ["t"]),
                                     helper.make_node("GRU", ["t", "W", "R"], ["y"], hidden_size=2, clip=0.5)],
                                    "then", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["s"])], "else", [],
                                    [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)])
    function = helper.make_function("custom", "Block", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                                    [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("If", ["flag"], ["z"], then_branch=then_branch, else_branch=else_branch),
             helper.make_node("Block", ["z"], ["u"], domain="custom"),
             helper.make_node("FusedMatMul", ["u", "W"], ["v"], domain="com.microsoft"),
             helper.make_node("Add", ["v", "v"], ["out"], domain="ai.onnx")]
    weight = helper.make_tensor("W", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph(
        nodes, "main",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", None]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("out", TensorProto.DOUBLE, [2])], initializer=[weight])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("custom", 1), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=[function], producer_name="handmade")
    return bytes(model.SerializeToString())


def test_histogram_counts_subgraphs_functions_and_prefixes_domains() -> None:
    structure = onnx_structure(nested_model())
    assert structure.op_histogram == {"Add": 1, "GRU": 1, "If": 1, "Relu": 1, "Sigmoid": 1, "Tanh": 1,
                                      "com.microsoft:FusedMatMul": 1, "custom:Block": 1}
    assert structure.total_ops == 8
    assert structure.opsets == {"ai.onnx": 17, "com.microsoft": 1, "custom": 1}
    assert structure.producer == "handmade"
    assert structure.recurrent_nodes == (gru(hidden_size=2, clip=0.5, linear_before_reset=0),)


def test_inputs_skip_initializers_and_show_unknown_dims() -> None:
    structure = onnx_structure(nested_model())
    assert structure.inputs == (TensorSignature(name="flag", elem_type="BOOL", shape=()),
                                TensorSignature(name="x", elem_type="FLOAT", shape=("n", "?")))
    assert structure.outputs == (TensorSignature(name="out", elem_type="DOUBLE", shape=(2,)),)


def test_a_float_attribute_survives_the_json_round_trip() -> None:
    structure = onnx_structure(nested_model())
    assert structure.recurrent_nodes[0].attributes["clip"] == 0.5
    assert OnnxStructure.from_dict(json.loads(json.dumps(structure.to_dict()))) == structure


# --- bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [b"garbage bytes", b"", b"\x08\x07"], ids=["corrupt", "empty", "no-graph"])
def test_bytes_that_are_no_model_raise_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError, match=r"^not an ONNX model: "):
        onnx_structure(garbage)


def _broken(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    data = BASE.to_dict()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "named"), [
    (("opsets",), _DELETE, "top level: missing opsets"),
    (("extra",), 1, "top level: unexpected extra"),
    (("opsets", "ai.onnx"), "17", "opsets['ai.onnx']"),
    (("op_histogram", "Add"), True, "op_histogram['Add']"),
    (("op_histogram", "Add"), -1, "op_histogram['Add']"),
    (("producer",), None, "producer"),
    (("recurrent_nodes",), {}, "recurrent_nodes"),
    (("recurrent_nodes", 0, "op_type"), "Conv", "recurrent_nodes[0].op_type"),
    (("recurrent_nodes", 0, "attributes"), [], "recurrent_nodes[0].attributes"),
    (("recurrent_nodes", 0, "attributes", "clip"), {"a": 1}, "recurrent_nodes[0].attributes['clip']"),
    (("recurrent_nodes", 0, "attributes", "activations"), ["Tanh", None], "recurrent_nodes[0].attributes"),
    (("inputs", 1, "shape", 1), 1.5, "inputs[1].shape[1]"),
    (("inputs", 1, "name"), 3, "inputs[1].name"),
    (("outputs", 0), "h_n", "outputs[0]"),
    (("outputs", 0, "elem_type"), _DELETE, "outputs[0]: missing elem_type"),
])
def test_from_dict_names_the_malformed_field(path: tuple[str | int, ...], value: object, named: str) -> None:
    with pytest.raises(ValueError, match=r"^onnx structure: ") as raised:
        OnnxStructure.from_dict(_broken(path, value))
    assert named in str(raised.value)


def test_from_dict_of_a_non_object_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"^onnx structure: top level must be an object with opsets, "):
        OnnxStructure.from_dict([])  # type: ignore[arg-type]


def test_reading_and_diffing_need_no_torch_or_onnx() -> None:
    """The recorded side runs where torch and onnx cannot be imported."""
    script = textwrap.dedent("""
        import json, sys
        for blocked in ("torch", "onnx", "onnxruntime"):
            sys.modules[blocked] = None
        from harness.judging.structure import OnnxStructure, structure_diff
        data = json.loads(sys.argv[1])
        now = dict(data, opsets={"ai.onnx": 18})
        print(json.dumps(structure_diff(OnnxStructure.from_dict(data), OnnxStructure.from_dict(now))))
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(BASE.to_dict())], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["opset ai.onnx 17 → 18"]
