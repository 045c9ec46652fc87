"""The ONNX reference evaluator backends: the same export as ONNX Runtime, read by onnx's NumPy evaluator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from harness.backends.base import Artifact
from harness.backends.capture import captured_upstream_messages
from harness.backends.onnx_reference import OnnxReferenceBackend
from harness.backends.onnx_runtime import Exporter, OnnxRuntimeBackend
from harness.judging.compare import compare_outputs
from harness.model.case import Case, build_case
from harness.model.config import RnnConfig
from harness.model.tolerance import TolerancePolicy
from harness.session.artifacts import obtain
from harness.store.cache import ExportCache
from tests.conftest import REFERENCE_ID, CliResult

EXPORTERS: list[Exporter] = ["legacy", "dynamo"]
SPREAD = [
    RnnConfig(),
    RnnConfig(cell="lstm", initial_state="random"),
    RnnConfig(cell="gru", bidirectional=True),
    RnnConfig(num_layers=2),
]
Outputs = dict[str, np.ndarray]


def exported(case: Case, exporter: Exporter) -> Artifact:
    with captured_upstream_messages():
        return OnnxReferenceBackend(exporter).export(case)


def run_both(case: Case, artifact: Artifact, exporter: Exporter) -> tuple[Outputs, Outputs]:
    """(ORT, reference evaluator) outputs of one and the same artifact."""
    with captured_upstream_messages():
        ort = OnnxRuntimeBackend(exporter).load(artifact, case.output_names).run(case.inputs)
        reference = OnnxReferenceBackend(exporter).load(artifact, case.output_names).run(case.inputs)
    return ort, reference


def eager(case: Case) -> Outputs:
    from harness.backends.eager import EagerBackend

    return EagerBackend("cpu").prepare(case).run(case.inputs)


def worst(expected: Outputs, actual: Outputs) -> float:
    assert list(actual) == list(expected)
    return max(float(np.max(np.abs(actual[name].astype(np.float64) - expected[name]))) for name in expected)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("config", SPREAD, ids=lambda config: config.id)
def test_agrees_with_ort_on_the_same_export_and_with_eager(exporter: Exporter, config: RnnConfig) -> None:
    case = build_case(config)
    ort, reference = run_both(case, exported(case, exporter), exporter)
    expected = eager(case)
    assert {name: (a.dtype, a.shape) for name, a in reference.items()} == {
        name: (a.dtype, a.shape) for name, a in expected.items()}
    assert worst(ort, reference) <= 1e-6
    tolerance = TolerancePolicy().for_cell(f"onnx-reference-{exporter}", config.dtype)
    assert (tolerance.atol, tolerance.rtol) == (2e-6, 1e-5)
    comparisons = compare_outputs(expected, reference, tolerance)
    assert all(comparison.passed for comparison in comparisons), comparisons


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_float64_plain_rnn_stays_float64_and_matches_eager(exporter: Exporter) -> None:
    # ORT has no double RNN kernel for the legacy export; the evaluator runs both exports in float64.
    case = build_case(RnnConfig(dtype="float64"))
    with captured_upstream_messages():
        reference = OnnxReferenceBackend(exporter).prepare(case).run(case.inputs)
    assert all(array.dtype == np.float64 for array in reference.values())
    assert worst(eager(case), reference) <= 1e-12


def test_relu_rnn_of_the_legacy_export_is_unsupported_with_the_observed_error(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy("rnnrelu-h8-s0")
    report = tmp_path / "r.json"
    result = cli("run", "--config", "rnnrelu-h8-s0", "--backend", "onnx-reference-legacy",
                 "--golden-dir", str(golden), "--json", str(report))
    assert result.exit_code == 0, result.out + result.err
    [cell] = json.loads(report.read_text(encoding="utf-8"))["cells"]
    assert cell["verdict"] == "unsupported"
    assert "not Relu" in cell["reason"]
    assert "(observed: RuntimeError: Unknown activation function 'Relu'.)" in cell["reason"]


def test_limitations_name_what_fails_where() -> None:
    legacy, dynamo = OnnxReferenceBackend("legacy"), OnnxReferenceBackend("dynamo")
    relu, projected = RnnConfig(cell="rnn_relu"), RnnConfig(cell="lstm", proj_size=4)
    # The dynamo exporter unrolls a plain RNN into Relu nodes, which the evaluator does compute.
    assert dynamo.known_limitation(relu) is None
    assert legacy.known_limitation(projected) == OnnxRuntimeBackend("legacy").known_limitation(projected)
    assert "reference evaluator" in (dynamo.known_limitation(projected) or "")
    assert legacy.known_limitation(RnnConfig(dtype="float64")) is None
    case = build_case(relu)
    with captured_upstream_messages():
        relu_outputs = dynamo.prepare(case).run(case.inputs)
    assert worst(eager(case), relu_outputs) <= 1e-6


def test_shares_the_export_cache_entry_with_ort(tmp_path: Path) -> None:
    case = build_case(RnnConfig())
    cache = ExportCache(tmp_path / "cache")
    by_ort = obtain(case, OnnxRuntimeBackend("legacy"), cache)
    by_reference = obtain(case, OnnxReferenceBackend("legacy"), cache)
    assert (by_ort.source, by_reference.source) == ("exported", "cache (exported earlier in this run)")
    assert by_reference.artifact.sha256 == by_ort.artifact.sha256
    later = obtain(case, OnnxReferenceBackend("legacy"), ExportCache(tmp_path / "cache"))  # another run's cache
    assert later.source == "cache" and later.artifact.sha256 == by_ort.artifact.sha256


def with_linear_before_reset(data: bytes, value: int) -> bytes:
    model = onnx.load_from_string(data)
    [gru] = [node for node in model.graph.node if node.op_type == "GRU"]
    [attribute] = [attribute for attribute in gru.attribute if attribute.name == "linear_before_reset"]
    assert attribute.i == 1  # torch's GRU resets after the recurrent matmul: ONNX's linear_before_reset=1
    attribute.i = value
    return bytes(model.SerializeToString())


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_a_wrong_graph_moves_both_runtimes_alike(exporter: Exporter) -> None:
    # A graph that is wrong (as an exporter bug would write it) moves ORT and the evaluator away from eager
    # by the same amount: the two read the graph independently and agree on what it computes. So when both
    # move, the exporter wrote the wrong graph; when ORT alone moves, ORT computes the graph wrongly.
    case = build_case(RnnConfig(cell="gru", initial_state="random"))
    artifact = exported(case, exporter)
    wrong = Artifact(kind="onnx", data=with_linear_before_reset(artifact.data, 0), producer=artifact.producer)
    ort, reference = run_both(case, wrong, exporter)
    expected = eager(case)
    assert worst(expected, ort) > 1e-3 and worst(expected, reference) > 1e-3
    assert worst(ort, reference) <= 1e-6


_REPLAY_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
from pathlib import Path
import numpy as np
from harness.backends.base import Artifact
from harness.backends.onnx_reference import OnnxReferenceBackend
from harness.model.inputs import build_inputs
from harness.store.golden import GoldenStore

golden_dir, config_id, exporter = sys.argv[1:]
store = GoldenStore(Path(golden_dir))
golden = store.load(config_id)
# Picked by what it is, not by which backend stored it: ORT's export is the evaluator's too.
[entry] = {entry.sha256: entry for entry in golden.artifacts.values()
           if entry.kind == "onnx" and entry.producer["dynamo"] == (exporter == "dynamo")}.values()
artifact = Artifact(kind=entry.kind, data=store.artifact_bytes(golden, entry.backend), producer=entry.producer)
outputs = OnnxReferenceBackend(exporter).load(artifact, list(golden.tensors)).run(build_inputs(golden.config))
print(json.dumps({name: [str(array.dtype), float(np.max(np.abs(array - golden.tensors[name])))]
                  for name, array in outputs.items()}))
"""


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_replays_a_stored_onnx_artifact_without_torch(exporter: Exporter, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    result = subprocess.run([sys.executable, "-c", _REPLAY_WITHOUT_TORCH, str(golden), REFERENCE_ID, exporter],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    distances = json.loads(result.stdout)
    assert list(distances) == ["output", "h_n"]
    assert all(dtype == "float32" and distance <= 1e-6 for dtype, distance in distances.values()), distances
