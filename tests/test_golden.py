from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from harness.errors import GoldenError
from harness.model.config import RnnConfig
from harness.model.environment import current_environment
from harness.store.golden import Golden, GoldenStore


def make_golden(value: float = 0.5, config: RnnConfig | None = None) -> Golden:
    return Golden(
        config=config or RnnConfig(),
        tensors={"output": np.full((3, 5, 8), value, dtype=np.float32), "h_n": np.zeros((1, 5, 8), np.float32)},
        weights_sha256="a" * 64, inputs_sha256="b" * 64, recorded_by="eager", recorded_at="2026-01-01T00:00:00+00:00",
        environment=current_environment(torch_threads=1),
    )


def test_round_trip_preserves_tensors_and_provenance(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path)
    store.write(make_golden())
    loaded = store.load("rnn-h8-s0")
    assert loaded.config == RnnConfig()
    np.testing.assert_array_equal(loaded.tensors["output"], np.full((3, 5, 8), 0.5, np.float32))
    manifest = json.loads((tmp_path / "rnn-h8-s0.json").read_text())
    assert manifest["tensors"]["output"]["shape"] == [3, 5, 8]
    assert manifest["environment"]["packages"]["torch"]
    assert manifest["config_hash"] == RnnConfig().content_hash


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path)
    store.write(make_golden(0.5))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(GoldenError, match="golden exists; pass --force"):
        store.write(make_golden(0.25))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    store.write(make_golden(0.25), force=True)
    assert store.load("rnn-h8-s0").tensors["output"][0, 0, 0] == 0.25
    assert len(list(tmp_path.glob("*.npz"))) == 1  # the replaced tensors file is gone


def test_a_record_killed_before_its_commit_leaves_the_old_golden(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = GoldenStore(tmp_path)
    store.write(make_golden(0.5))
    real_replace = os.replace

    def die_on_manifest(source: str, target: str | Path) -> None:
        if str(target).endswith(".json"):
            raise KeyboardInterrupt  # as if the process were killed just before the commit
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", die_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        store.write(make_golden(0.25), force=True)
    monkeypatch.undo()
    assert store.load("rnn-h8-s0").tensors["output"][0, 0, 0] == 0.5
    assert not list(tmp_path.glob(".*.tmp"))


def test_truncated_tensors_file_names_the_file(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path)
    store.write(make_golden())
    tensors = next(tmp_path.glob("*.npz"))
    tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(GoldenError, match=f"{tensors}: corrupt golden tensors file"):
        store.load("rnn-h8-s0")


def test_corrupt_manifest_and_missing_golden(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path)
    with pytest.raises(GoldenError, match="no golden for this config"):
        store.load("rnn-h8-s0")
    store.write(make_golden())
    (tmp_path / "rnn-h8-s0.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(GoldenError, match=r"rnn-h8-s0\.json: corrupt golden manifest"):
        store.load("rnn-h8-s0")


def test_edited_tensor_fails_its_sha256(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path)
    store.write(make_golden())
    tensors = next(tmp_path.glob("*.npz"))
    np.savez(tensors, output=np.full((3, 5, 8), 0.7, np.float32), h_n=np.zeros((1, 5, 8), np.float32))
    with pytest.raises(GoldenError, match="'output' does not match the sha256 in its manifest"):
        store.load("rnn-h8-s0")


def test_pickled_arrays_are_never_loaded(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path)
    store.write(make_golden())
    tensors = next(tmp_path.glob("*.npz"))
    np.savez(tensors, output=np.array([{"evil": 1}], dtype=object), h_n=np.zeros(1))
    with pytest.raises(GoldenError, match=r"member 'output.npy' holds \(1,\) \|O; its manifest declares \(3, 5, 8\) "
                                          r"float32 \(<f4\)"):
        store.load("rnn-h8-s0")
