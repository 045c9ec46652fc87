"""Drift diagnosis end to end: attribution, own fingerprints, invariants, pitfalls, environment."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.model.case import build_case, build_module
from harness.model.config import RnnConfig
from harness.model.hashing import arrays_sha256
from harness.store.golden import GoldenStore
from tests.conftest import REFERENCE_ID, CliResult
from tests.doubles import registered_doubles

Cli = Callable[..., CliResult]


@pytest.fixture(autouse=True)
def doubles() -> Iterator[None]:
    with registered_doubles():
        yield


def eager_outputs(module: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        output, h_n = module(torch.from_numpy(x))
    return {"output": output.numpy(), "h_n": h_n.numpy()}


def replace_golden(golden_dir: Path, config_id: str, **changes: object) -> None:
    store = GoldenStore(golden_dir)
    store.write(dataclasses.replace(store.load(config_id), **changes), force=True)  # type: ignore[arg-type]


def run(cli: Cli, golden: Path, *backends: str, config: str = REFERENCE_ID) -> CliResult:
    flags = [flag for backend in backends for flag in ("--backend", backend)]
    return cli("run", "--config", config, "--golden-dir", str(golden), *flags)


def test_golden_from_another_seed_is_attributed_to_the_weights(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    case = build_case(RnnConfig())
    other_seed = build_module(RnnConfig(seed=1))
    replace_golden(golden, REFERENCE_ID, tensors=eager_outputs(other_seed, case.inputs["input"]),
                   weights_sha256=build_case(RnnConfig(seed=1)).weights_sha256)
    result = run(cli, golden, "eager")
    assert result.exit_code == 1
    assert f"{REFERENCE_ID} x eager: DRIFT (tolerance atol=2e-06 rtol=1e-05); cause: weights changed" in result.out
    # The oracle runs today's weights: it cannot tell which side moved, and does not pretend to.
    assert "from it, the golden" in result.out and "computed from today's weights, so it cannot say which side moved" \
        in result.out and "is the one away from" not in result.out


def test_golden_from_other_inputs_is_attributed_to_the_inputs(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    case = build_case(RnnConfig())
    perturbed = case.inputs["input"].copy()
    perturbed[0, 0] = perturbed[0, 0][::-1]  # the first letter of the first word changed
    replace_golden(golden, REFERENCE_ID, tensors=eager_outputs(case.module, perturbed),
                   inputs_sha256=arrays_sha256({"input": perturbed}))
    result = run(cli, golden, "eager")
    assert result.exit_code == 1 and "cause: inputs changed" in result.out


def test_a_changed_kernel_is_attributed_to_compute_with_oracle_distances(
    cli: Cli, golden_copy: Callable[..., Path], tmp_path: Path
) -> None:
    config_id = "lstm-h8-t20b4-s0"
    golden = golden_copy(config_id)
    report = tmp_path / "report.json"
    result = cli("run", "--config", config_id, "--golden-dir", str(golden), "--backend", "eager",
                 "--backend", "test-offset", "--json", str(report))
    assert result.exit_code == 1
    assert f"{config_id} x test-offset: DRIFT (tolerance atol=2e-06 rtol=1e-05); cause: compute changed" in result.out
    assert "float64 oracle: this result is 1.0e-03" in result.out
    assert "this result moved away from the mathematics" in result.out
    assert "error by time step:" in result.out and "does not grow along the sequence" in result.out
    assert "h_n error by layer/direction: layer 1 1.0e-03" in result.out
    assert "argmax unchanged" in result.out
    cell = next(c for c in json.loads(report.read_text())["cells"] if c["backend"] == "test-offset")
    assert cell["cause"] == "compute changed (same inputs and weights)"
    assert cell["oracle"]["max_abs"] == pytest.approx(1e-3, rel=1e-2)
    assert cell["golden_oracle"]["max_abs"] < 1e-6  # the golden sits on the mathematics; the result moved away
    assert cell["argmax_changed"] == 0 and cell["past"]["status"] == "new"


def test_a_nondeterministic_backend_is_named(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    result = run(cli, golden, "test-noisy")
    assert result.exit_code == 1
    assert (f"{REFERENCE_ID} x test-noisy: NONDETERMINISTIC: two runs of the same prepared model must be bitwise "
            "equal (no tolerance applies)") in result.out
    assert "    largest difference between the two runs: " in result.out and "histogram" not in result.out


def test_broken_invariant_is_caught_without_any_golden(cli: Cli) -> None:
    result = cli("check", "--config", REFERENCE_ID, "--backend", "eager", "--backend", "test-broken-state")
    assert result.exit_code == 1
    assert f"{REFERENCE_ID} x test-broken-state: INVARIANT" in result.out
    assert "invariant broken: output[last step] (forward) != h_n[last layer]" in result.out


def test_check_validates_backends_without_goldens(cli: Cli, tmp_path: Path) -> None:
    result = cli("check", "--config", "gru-h8-bi-s0", "--backend", "eager", "--backend", "onnxruntime")
    assert result.exit_code == 0, result.out
    assert "reference: eager CPU computed in this run" in result.out
    assert "golden" not in result.out.lower()  # check mode never talks about goldens
    assert "identical  " in result.out and "(?)" not in result.out  # no past to compare with in a live check


@pytest.mark.parametrize(
    ("config_id", "backend", "pitfall"),
    [("gru-h8-t20b4-s0", "test-gru-lbr0", "known exporter pitfall: GRU linear_before_reset"),
     ("lstm-h8-l2-bi-s0", "test-lstm-iofc", "known exporter pitfall: LSTM gate order")],
)
def test_known_exporter_pitfalls_are_named(
    cli: Cli, golden_copy: Callable[..., Path], config_id: str, backend: str, pitfall: str
) -> None:
    golden = golden_copy(config_id)
    result = run(cli, golden, backend, config=config_id)
    assert result.exit_code == 1
    assert pitfall in result.out


def test_no_pitfall_is_named_for_an_unrelated_drift(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy("gru-h8-t20b4-s0")
    result = run(cli, golden, "test-offset", config="gru-h8-t20b4-s0")
    assert result.exit_code == 1 and "known exporter pitfall" not in result.out


def test_backend_moved_within_tolerance_is_reported_against_its_own_fingerprint(
    cli: Cli, golden_copy: Callable[..., Path]
) -> None:
    golden = golden_copy(REFERENCE_ID)
    store = GoldenStore(golden)
    recorded = store.load(REFERENCE_ID)
    past = {name: array.copy() for name, array in recorded.backend_tensors["onnxruntime-legacy"].items()}
    past["output"][0, 0, 0] = np.nextafter(past["output"][0, 0, 0], np.float32(2))  # 1 ulp
    past["output"][0, 0, 1] = np.nextafter(np.nextafter(past["output"][0, 0, 1], np.float32(2)), np.float32(2))
    fingerprints = {**recorded.backend_fingerprints,
                    "onnxruntime-legacy": {**recorded.backend_fingerprints["onnxruntime-legacy"],
                                           "sha256": arrays_sha256(past)}}
    replace_golden(golden, REFERENCE_ID, backend_fingerprints=fingerprints,
                   backend_tensors={**recorded.backend_tensors, "onnxruntime-legacy": past})
    result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--backend",
                 "onnxruntime-legacy,onnxruntime-dynamo", "-v")  # -v: the table, and each moved cell
    assert result.exit_code == 0
    # The relation, not this machine's numbers: both close (some ulps, within tolerance); legacy moved by the
    # 2 ulps planted in its fingerprint, dynamo unchanged.
    cells = re.search(rf"^{REFERENCE_ID}\s+close (\S+)/(\d+)u \(\+2u\)\s+close (\S+)/(\d+)u \(=\)$", result.out,
                      re.MULTILINE)
    assert cells, result.out
    for max_abs, ulps in ((cells[1], cells[2]), (cells[3], cells[4])):
        assert int(ulps) > 0 and 0 < float(max_abs) <= 2e-6
    assert f"{REFERENCE_ID} x onnxruntime-legacy: moved by 2 ulps (max abs" in result.out


def test_environment_change_stands_next_to_the_drift(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    recorded = GoldenStore(golden).load(REFERENCE_ID)
    older = dataclasses.replace(recorded.environment,
                                packages={**recorded.environment.packages, "torch": "2.11.0"}, torch_threads=4)
    tensors = {name: array.copy() for name, array in recorded.tensors.items()}
    tensors["output"][2, 4, 7] += np.float32(1e-3)
    replace_golden(golden, REFERENCE_ID, environment=older, tensors=tensors)
    result = run(cli, golden, "eager")
    assert result.exit_code == 1
    assert "environment since the golden: torch 2.11.0 -> " in result.out
    assert "torch_threads: 4 -> 1" in result.out
