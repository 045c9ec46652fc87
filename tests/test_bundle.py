"""The debugging bundle (harness/reports/bundle.py), read back by the real consumers: Polygraphy's CLI and
loaders, and onnx for the backend-test .pb files. Models are exported as the ONNX Runtime backend does
(legacy exporter, opset 17); the goldens come from eager torch."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.model.config import RnnConfig
from harness.reports.bundle import CHECK_COMMAND, Bundle, write_bundle
from harness.reports.files import OutputError

RUNNER = "harness-golden:eager"
CONFIGS = {
    "rnn": RnnConfig(),  # the notebook's: input (3, 5, 4) -> output (3, 5, 8), h_n (1, 5, 8)
    "lstm": RnnConfig(cell="lstm", initial_state="random"),  # input, h0, c0 -> output, h_n, c_n
}
POLYGRAPHY = Path(sys.executable).with_name("polygraphy")  # the console script of this environment


def exported_bundle(config: RnnConfig) -> Bundle:
    """The model as the onnxruntime-legacy backend exports it, with eager torch's outputs as the golden."""
    import torch

    from harness.backends.wrappers import flat_module_for
    from harness.model.case import build_case

    case = build_case(config)
    wrapper = flat_module_for(case)
    examples = tuple(torch.from_numpy(array) for array in case.inputs.values())
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(wrapper, examples, buffer, dynamo=False, opset_version=17,  # type: ignore[arg-type]
                          input_names=case.input_names, output_names=case.output_names)
    with torch.no_grad():
        golden = [tensor.numpy() for tensor in wrapper(*examples)]
    return Bundle(
        model_bytes=buffer.getvalue(),
        inputs=dict(case.inputs),
        outputs=dict(zip(case.output_names, golden, strict=True)),
        runner_name=RUNNER,
        description={"config": config.id, "backend": "onnxruntime-legacy", "versions": {"torch": torch.__version__}},
    )


@pytest.fixture(scope="module")
def bundles() -> dict[str, Bundle]:
    return {name: exported_bundle(config) for name, config in CONFIGS.items()}


def perturbed(bundle: Bundle, amount: float = 1e-3) -> Bundle:
    """The bundle with one golden element of `output` moved by amount."""
    output = bundle.outputs["output"].copy()
    output[1, 2, 3] += amount
    return replace(bundle, outputs={**bundle.outputs, "output": output})


def strict_json(path: Path) -> Any:
    """JSON as every parser reads it: NaN and Infinity, which Python's json accepts by default, refused."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path.name}: non-standard JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def polygraphy_check(bundle_dir: Path) -> subprocess.CompletedProcess[str]:
    """The check command the bundle itself records, run from inside the bundle as its README says."""
    # polygraphy is in the test extra: its absence is a broken environment, never a skip.
    assert POLYGRAPHY.exists(), f"polygraphy is not installed in this environment ({POLYGRAPHY} missing)"
    command = shlex.split(strict_json(bundle_dir / "harness.json")["check_command"])
    assert command[0] == "polygraphy"
    started = time.perf_counter()
    result = subprocess.run([str(POLYGRAPHY), *command[1:]], cwd=bundle_dir, capture_output=True, text=True,
                            timeout=120, check=False)
    print(f"polygraphy check: exit {result.returncode} in {time.perf_counter() - started:.1f} s")
    return result


@pytest.mark.parametrize("name", CONFIGS)
def test_polygraphy_passes_the_bundle_against_onnx_runtime(name: str, bundles: dict[str, Bundle],
                                                           tmp_path: Path) -> None:
    """ONNX Runtime differs from eager by ~1e-7 here, inside Polygraphy's default atol = rtol = 1e-5."""
    out = tmp_path / "bundle"
    write_bundle(bundles[name], out)
    result = polygraphy_check(out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"vs. {RUNNER} | Passed: 1/1 iterations" in result.stdout
    for output in bundles[name].outputs:
        assert f"PASSED | Output: '{output}'" in result.stdout


def test_polygraphy_fails_a_golden_perturbed_at_one_element(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_bundle(perturbed(bundles["rnn"]), out)
    result = polygraphy_check(out)
    assert result.returncode != 0
    assert "FAILED | simple | Mismatched outputs: ['output']" in result.stdout, result.stdout
    assert "PASSED | Output: 'h_n'" in result.stdout


@pytest.mark.parametrize("name", CONFIGS)
def test_polygraphy_loads_the_arrays_bitwise_in_order(name: str, bundles: dict[str, Bundle], tmp_path: Path) -> None:
    """Through Polygraphy's own loaders (what --load-inputs and --load-outputs call)."""
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    bundle = bundles[name]
    write_bundle(bundle, tmp_path / "bundle")
    feeds = load_json(str(tmp_path / "bundle" / "inputs.json"))
    assert len(feeds) == 1 and list(feeds[0]) == list(bundle.inputs)
    for input_name, array in bundle.inputs.items():
        assert_bitwise(feeds[0][input_name], array)
    results = RunResults.load(str(tmp_path / "bundle" / "golden.json"))
    assert list(results.keys()) == [RUNNER]
    [iteration] = results[RUNNER]
    assert (iteration.runner_name, iteration.runtime) == (RUNNER, 0.0)
    assert list(iteration.keys()) == list(bundle.outputs)
    for output_name, array in bundle.outputs.items():
        assert_bitwise(iteration[output_name], array)


def test_documents_equal_what_polygraphy_itself_writes(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    """Polygraphy's own encoder (--save-inputs / --save-outputs) on the same arrays gives the same documents."""
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import to_json

    bundle = bundles["lstm"]
    write_bundle(bundle, tmp_path / "bundle")
    theirs = RunResults([(RUNNER, [IterationResult(outputs=bundle.outputs, runtime=0.0, runner_name=RUNNER)])])
    assert strict_json(tmp_path / "bundle" / "golden.json") == json.loads(theirs.to_json())
    assert strict_json(tmp_path / "bundle" / "inputs.json") == json.loads(to_json([bundle.inputs]))


@pytest.mark.parametrize("name", CONFIGS)
def test_backend_test_data_set_holds_named_tensors_in_graph_order(name: str, bundles: dict[str, Bundle],
                                                                 tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    bundle = bundles[name]
    write_bundle(bundle, tmp_path / "bundle")
    data_set = tmp_path / "bundle" / "test_data_set_0"
    model = onnx.load_model_from_string(bundle.model_bytes)
    graph_names = {"input": [tensor.name for tensor in model.graph.input],
                   "output": [tensor.name for tensor in model.graph.output]}
    assert graph_names == {"input": list(bundle.inputs), "output": list(bundle.outputs)}
    for kind, arrays in (("input", bundle.inputs), ("output", bundle.outputs)):
        assert sorted(path.name for path in data_set.glob(f"{kind}_*.pb")) == [f"{kind}_{i}.pb" for i in
                                                                               range(len(arrays))]
        for index, (tensor_name, array) in enumerate(arrays.items()):
            tensor = onnx.load_tensor(str(data_set / f"{kind}_{index}.pb"))
            assert tensor.name == graph_names[kind][index] == tensor_name
            assert_bitwise(numpy_helper.to_array(tensor), array)


def test_files_are_strict_json_with_provenance_and_checksums(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    written = write_bundle(bundles["lstm"], out)
    on_disk = {path for path in out.rglob("*") if path.is_file()}
    assert set(written) == on_disk and len(written) == len(on_disk)
    description = strict_json(out / "harness.json")
    for key, value in bundles["lstm"].description.items():
        assert description[key] == value
    assert description["check_command"] == CHECK_COMMAND
    files = description.pop("files")
    assert set(files) == {str(path.relative_to(out)) for path in on_disk} - {"harness.json"}
    for relative, digest in files.items():
        assert hashlib.sha256((out / relative).read_bytes()).hexdigest() == digest, relative
    assert (out / "model.onnx").read_bytes() == bundles["lstm"].model_bytes
    assert_polygraphy_layout(strict_json(out / "golden.json"), strict_json(out / "inputs.json"), bundles["lstm"])
    readme = (out / "README.txt").read_text(encoding="utf-8").splitlines()
    assert len(readme) == 3
    assert CHECK_COMMAND in readme[1] and "polygraphy debug reduce" in readme[2]


def test_the_same_bundle_writes_the_same_bytes(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    """No timestamps, counters or random names in what is written: a bundle can itself be compared."""
    first = write_bundle(bundles["rnn"], tmp_path / "a")
    second = write_bundle(bundles["rnn"], tmp_path / "b")
    assert [path.relative_to(tmp_path / "a") for path in first] == [path.relative_to(tmp_path / "b") for path in second]
    assert [path.read_bytes() for path in first] == [path.read_bytes() for path in second]


def test_an_empty_existing_directory_is_filled(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    written = write_bundle(bundles["rnn"], out)
    assert all(path.is_file() for path in written)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]  # no staging directory left


def test_a_non_empty_directory_is_refused_and_left_untouched(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the user's own model")
    with pytest.raises(OutputError, match="exists and is not empty") as raised:
        write_bundle(bundles["rnn"], out)
    assert str(out) in raised.value.message and "\n" not in raised.value.message
    assert raised.value.exit_code == 2
    assert [path.name for path in out.iterdir()] == ["model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"the user's own model"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]


def test_a_file_in_the_way_is_refused(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.write_text("notes")
    with pytest.raises(OutputError, match="not a directory"):
        write_bundle(bundles["rnn"], out)
    assert out.read_text() == "notes"


def test_a_missing_parent_is_refused(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    out = tmp_path / "missing" / "bundle"
    with pytest.raises(OutputError, match="does not exist") as raised:
        write_bundle(bundles["rnn"], out)
    assert str(out) in raised.value.message
    assert not (tmp_path / "missing").exists()


def test_a_failed_write_leaves_neither_a_bundle_nor_a_staging_directory(bundles: dict[str, Bundle],
                                                                         tmp_path: Path) -> None:
    """NaN in the description is not JSON: the write fails after the arrays were written, and all goes."""
    broken = replace(bundles["rnn"], description={"tolerance": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        write_bundle(broken, tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def test_description_keys_the_bundle_writes_itself_are_refused(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="check_command"):
        write_bundle(replace(bundles["rnn"], description={"check_command": "mine"}), tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def assert_polygraphy_layout(golden: Any, inputs: Any, bundle: Bundle) -> None:
    """The exact documents of polygraphy/json/serde.py and comparator/struct.py (FINDINGS.md), not only what
    today's loader happens to accept (it also reads the LazyNumpyArray alias and an integer runtime)."""
    __tracebackhide__ = True

    def array(values: np.ndarray) -> dict[str, str]:
        encoded = io.BytesIO()
        np.save(encoded, values, allow_pickle=False)
        return {"array": base64.b64encode(encoded.getvalue()).decode("ascii"), "polygraphy_class": "ndarray"}

    outputs = {name: {"values": array(values), "polygraphy_class": "LazyArray"}
               for name, values in bundle.outputs.items()}
    iteration = {"outputs": outputs, "runtime": 0.0, "runner_name": RUNNER, "polygraphy_class": "IterationResult"}
    assert golden == {"lst": [[RUNNER, [iteration]]], "polygraphy_class": "RunResults"}
    assert type(iteration_of(golden)["runtime"]) is float
    assert list(iteration_of(golden)["outputs"]) == list(bundle.outputs)
    assert inputs == [{name: array(values) for name, values in bundle.inputs.items()}]
    assert list(inputs[0]) == list(bundle.inputs)


def iteration_of(golden: Any) -> Any:
    [[_, [iteration]]] = golden["lst"]
    return iteration


def assert_bitwise(actual: np.ndarray, expected: np.ndarray) -> None:
    __tracebackhide__ = True
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()


def test_a_float64_bundle_is_checked_at_the_harness_tolerance_not_polygraphys_default(cli: Callable[..., Any],
                                                                                        tmp_path: Path) -> None:
    """Polygraphy's default (atol = rtol = 1e-5) would pass a float64 golden moved by 1e-9; the bundle's check
    command carries the tolerance the harness holds the cell to, and Polygraphy passes the real artifact at it."""
    out = tmp_path / "f64"
    result = cli("bundle", "rnn-h8-f64-s0", "--backend", "onnxruntime-dynamo", str(out))
    assert result.exit_code == 0, result.out + result.err
    command = strict_json(out / "harness.json")["check_command"]
    assert command.endswith("--atol 1e-12 --rtol 1e-10") and command in result.out
    assert command in (out / "README.txt").read_text(encoding="utf-8")
    checked = polygraphy_check(out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    loose = replace(perturbed(exported_bundle(CONFIGS["rnn"]), 1e-9), tolerance=None)
    assert loose.check_command == CHECK_COMMAND  # a Bundle built without a tolerance keeps Polygraphy's default
