"""Invariance relations (suite key `relations`): chunked streaming with a carried state, batch slicing, zero state
and all-equal packing, judged on real backends, recorded bitwise per backend in the golden, and broken by a
state-handling bug injected at run time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.backends import register_backend, unregister_backend
from harness.backends.eager import EagerBackend
from harness.backends.relation_runs import chunk_cuts
from harness.errors import ConfigError
from harness.model.case import Case
from harness.model.config import RnnConfig
from tests.conftest import CliResult
from tests.doubles import DoubleBackend

SUITE = """
[[case]]
cell = "gru"
relations = ["chunked", "batch", "zero-state"]

[[case]]
cell = "lstm"
num_layers = 2
input = "gaussian"
seq_len = 7
batch = 3
relations = ["chunked", "batch", "zero-state", "padded"]
"""
GRU = "gru-h8-rel.chunk.bslice.zs-s0"
LSTM = "lstm-h8-l2-gauss-t7b3-rel.chunk.bslice.zs.pad-s0"
BACKENDS = "eager,torchscript-trace,onnxruntime-legacy,torch-export"


class StateBug:
    """Eager, except that the output is off by 1e-4 whenever a non-zero initial state is passed in."""

    def __init__(self, case: Case) -> None:
        self.inner = EagerBackend().prepare(case)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.inner.run(inputs)
        if "h0" in inputs and np.any(inputs["h0"] != 0):
            outputs = {**outputs, "output": outputs["output"] + np.float32(1e-4)}
        return outputs


class StateBugBackend(DoubleBackend):
    def prepare(self, case: Case) -> StateBug:
        return StateBug(case)


@pytest.fixture
def state_bug() -> Iterator[None]:
    register_backend("test-state-bug", lambda: StateBugBackend("test-state-bug"))  # type: ignore[arg-type]
    yield
    unregister_backend("test-state-bug")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from harness.cli import main

    root = tmp_path_factory.mktemp("relations")
    (root / "suite.toml").write_text(SUITE)
    code = main(["record", "--suite", str(root / "suite.toml"), "--golden-dir", str(root / "g"), "--backend",
                 BACKENDS])
    assert code == 0
    return root / "suite.toml", root / "g"


@pytest.mark.parametrize(("fields", "message"), [
    ({"relations": ["streaming"]}, "relations must be among 'chunked', 'batch', 'zero-state', 'padded'"),
    ({"relations": ["batch", "batch"]}, "relations lists a relation twice"),
    ({"relations": ["batch"], "model": "m:build"}, "relations are judged on a built-in RNN's forward pass"),
    ({"relations": ["batch"], "check": "grad"}, "relations are judged on a built-in RNN's forward pass"),
    ({"relations": ["batch"], "input": "gaussian", "seq_len": 4, "batch": 1}, "needs a batch of at least 2"),
    ({"relations": ["chunked"], "input": "gaussian", "seq_len": 2, "batch": 2}, "needs seq_len of at least 3"),
    ({"relations": ["zero-state"], "initial_state": "random"}, "needs initial_state 'zeros'"),
    ({"relations": ["padded"], "batch_first": True}, "needs a sequence-first batch"),
    ({"relations": "batch"}, "config key 'relations' must be list"),
])
def test_bad_relations_are_one_line_config_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RnnConfig.from_dict(fields)
    assert message in raised.value.message


def test_ids_and_hashes_include_relations_only_when_set() -> None:
    plain = RnnConfig(cell="gru")
    assert "relations" not in plain.to_dict()
    related = RnnConfig(cell="gru", relations=("chunked", "batch", "zero-state"))
    assert related.id == GRU and related.content_hash != plain.content_hash
    assert RnnConfig.from_dict(related.to_dict()) == related


def test_chunk_cuts_are_seeded_distinct_and_inside_the_sequence() -> None:
    config = RnnConfig(input="gaussian", seq_len=7, batch=3)
    for chunks in (2, 3):
        cuts = chunk_cuts(config, chunks)
        assert cuts == chunk_cuts(config, chunks) and len(set(cuts)) == chunks - 1
        assert all(0 < cut < 7 for cut in cuts) and cuts == sorted(cuts)


def test_relations_hold_and_their_bitwise_status_is_recorded_per_backend(
        recorded: tuple[Path, Path], cli: Callable[..., CliResult], tmp_path: Path) -> None:
    suite, golden = recorded
    fingerprints = json.loads((golden / f"{LSTM}.json").read_text())["backend_fingerprints"]
    assert fingerprints["eager"]["relations"]["chunked"] == {"bitwise": True, "max_abs": 0.0}
    assert fingerprints["eager"]["relations"]["zero-state"]["bitwise"] is True
    assert "chunked" not in fingerprints["torch-export"]["relations"]  # specialised to the example's length
    report = tmp_path / "r.json"
    result = cli("run", "--suite", str(suite), "--golden-dir", str(golden), "--backend", BACKENDS,
                 "--json", str(report))
    assert result.exit_code == 0, result.out
    assert "Invariance relations (2 configs x backends): " in result.out
    tabled = cli("run", "--suite", str(suite), "--golden-dir", str(golden), "--backend", BACKENDS, "--table")
    for relation in ("chunked", "batch", "zero-state", "padded"):
        assert f"  {relation}: holds bitwise on " in tabled.out
    assert "unsupported on torch-export" in tabled.out
    cells = {(cell["config"], cell["backend"]): cell for cell in json.loads(report.read_text())["cells"]}
    torch_export = {outcome["relation"]: outcome for outcome in cells[(LSTM, "torch-export")]["relations"]}
    assert torch_export["chunked"]["status"] == "unsupported" and torch_export["chunked"]["reason"]
    eager = {outcome["relation"]: outcome for outcome in cells[(GRU, "eager")]["relations"]}
    assert eager["chunked"]["status"] == "bitwise" and eager["chunked"]["recorded_bitwise"] is True


def test_a_state_handling_bug_breaks_chunked_with_an_invariant_naming_it(
        recorded: tuple[Path, Path], cli: Callable[..., CliResult], state_bug: None) -> None:
    suite, golden = recorded
    result = cli("run", "--suite", str(suite), "--golden-dir", str(golden), "--backend", "test-state-bug",
                 "--config", GRU)
    assert result.exit_code == 1, result.out
    assert "INVARIANT" in result.out
    assert "relation chunked broken on test-state-bug (2 chunks" in result.out
    assert "max abs 0.0001 at output, step" in result.out
    # zero-state breaks too (explicit zeros are zeros: no), batch holds (its state is zeros)
    assert "relation batch broken" not in result.out and "relation zero-state broken" not in result.out


def test_a_relation_whose_bitwise_status_changed_is_a_finding_not_a_failure(
        recorded: tuple[Path, Path], cli: Callable[..., CliResult], tmp_path: Path) -> None:
    suite, golden = recorded
    copy = tmp_path / "g"
    import shutil

    shutil.copytree(golden, copy)
    manifest_path = copy / f"{GRU}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["backend_fingerprints"]["eager"]["relations"]["chunked"]["bitwise"] = False
    manifest_path.write_text(json.dumps(manifest))
    result = cli("run", "--suite", str(suite), "--golden-dir", str(copy), "--backend", "eager", "--config", GRU)
    assert result.exit_code == 0, result.out
    assert "bitwise status changed since the goldens were recorded" in result.out
    assert "chunked: holds bitwise; recorded not bitwise, now bitwise" in result.out
