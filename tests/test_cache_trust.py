"""The export cache cannot serve a false pass. Tried as an attacker would: anyone can compute an entry's key, so
a planted constant model under it with a matching sha256 turned `run --bitwise` from DRIFT (exit 1) into
identical (exit 0). Now entries are sealed with an HMAC keyed by a secret outside the cache: a planted entry
fails it, is rebuilt, and the run still fails. Also: the key file, a deliberately shared key, the gate on
read entries, and what stands in the cache's way (a directory for a data file, a symlinked subdirectory)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.backends import get_backend
from harness.backends.base import Artifact
from harness.model.case import build_case
from harness.model.suite import load_suite
from harness.session.artifacts import cache_key, case_identity
from harness.store.cache import ExportCache
from harness.store.cache_secret import KEY_ENV
from harness.store.golden import GoldenStore
from tests.conftest import COMMITTED_GOLDEN, REFERENCE_ID

REPO = Path(__file__).resolve().parent.parent
HARNESS = (sys.executable, "-m", "harness")  # the interpreter running the tests (a venv, tox or nox)
BACKEND = "onnxruntime-legacy"  # not bitwise the golden on rnn-h8-s0: DRIFT under --bitwise
KEY = "ab" + "0" * 62


@pytest.fixture(autouse=True)
def private_key_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every test keys its caches from its own configuration directory, never the user's."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "harness" / "cache-key"


def stored(suffix: str = ".onnx") -> bytes:
    return sorted((COMMITTED_GOLDEN / "artifacts").glob(f"{REFERENCE_ID}.*{suffix}"))[0].read_bytes()


def constant_model(tensors: dict[str, np.ndarray]) -> bytes:
    """The attacker's artifact: ignores its input and outputs the golden's own tensors."""
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name=f"{name}_value"))
             for name, array in tensors.items()]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape))
               for name, array in tensors.items()]
    graph = helper.make_graph(nodes, "constant", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  ["t", "b", 4])], outputs)
    model_bytes: bytes = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    return model_bytes


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != KEY_ENV}
    env.update(HARNESS_CACHE_DIR=str(cwd / "cache"), XDG_CONFIG_HOME=str(cwd / "config"))
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
                          check=False)


def golden_copy(tmp_path: Path) -> Path:
    golden = tmp_path / "golden"
    (golden / "artifacts").mkdir(parents=True)
    for path in COMMITTED_GOLDEN.glob(f"{REFERENCE_ID}.*"):
        shutil.copy2(path, golden / path.name)
    for path in (COMMITTED_GOLDEN / "artifacts").glob(f"{REFERENCE_ID}.*"):
        shutil.copy2(path, golden / "artifacts" / path.name)
    return golden


def test_a_planted_entry_fails_its_hmac_is_rebuilt_and_the_bitwise_run_still_fails(tmp_path: Path) -> None:
    config = load_suite().select([REFERENCE_ID])[0]
    golden = GoldenStore(golden_copy(tmp_path)).load(REFERENCE_ID)
    key = cache_key(config.content_hash, get_backend(BACKEND), case_identity(build_case(config)))  # type: ignore[arg-type]
    data = constant_model(golden.tensors)
    entry = tmp_path / "cache" / key[:2] / key
    entry.parent.mkdir(parents=True)
    entry.with_suffix(".onnx").write_bytes(data)
    for schema in ("harness.export-cache/1", "harness.export-cache/2"):  # as before, and as an attacker who read on
        meta: dict[str, object] = {"schema": schema, "kind": "onnx", "sha256": hashlib.sha256(data).hexdigest(),
                                   "bytes": len(data), "producer": golden.artifacts[BACKEND].producer, "notes": [],
                                   "hmac": "0" * 64}
        entry.with_suffix(".json").write_text(json.dumps(meta))
        entry.with_suffix(".onnx").write_bytes(data)
        result = harness("run", "--config", REFERENCE_ID, "--backend", BACKEND, "--bitwise", "--golden-dir", "golden",
                         "--json", "report.json", cwd=tmp_path)
        assert result.returncode == 1, result.stdout + result.stderr
        [cell] = json.loads((tmp_path / "report.json").read_text())["cells"]
        assert cell["verdict"] == "DRIFT"
        assert cell["artifact_source"].startswith("exported (cache entry discarded: ")
        if schema.endswith("/2"):
            assert "fails its HMAC check" in cell["artifact_source"]
            assert f"  rebuilt {REFERENCE_ID} x {BACKEND}: exported (cache entry discarded" in result.stdout
        assert entry.with_suffix(".onnx").read_bytes() != data  # rebuilt: the export itself is there now
    assert ExportCache(tmp_path / "cache").get(key).entry is not None  # sealed with this test's key


def test_an_entry_from_another_key_or_moved_to_another_key_is_rebuilt(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = Artifact(kind="onnx", data=stored(), producer={"exporter": "x"})
    ExportCache(tmp_path / "cache", secret=b"a" * 32).put(KEY, artifact, ())
    assert ExportCache(tmp_path / "cache", secret=b"a" * 32).get(KEY).entry is not None
    other = "cd" + "0" * 62
    (tmp_path / "cache" / "cd").mkdir()
    for path in (tmp_path / "cache" / "ab").iterdir():
        shutil.copy2(path, tmp_path / "cache" / "cd" / path.name.replace(KEY, other))
    moved = ExportCache(tmp_path / "cache", secret=b"a" * 32).get(other)
    assert moved.entry is None and "fails its HMAC check" in moved.discarded
    lookup = ExportCache(tmp_path / "cache", secret=b"b" * 32).get(KEY)
    assert lookup.entry is None and "fails its HMAC check" in lookup.discarded
    assert list((tmp_path / "cache" / "ab").iterdir()) == []  # discarded


def test_a_shared_key_is_given_deliberately_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                private_key_location: Path) -> None:
    artifact = Artifact(kind="onnx", data=stored(), producer={})
    monkeypatch.setenv(KEY_ENV, "ci-secret-" + "x" * 30)
    assert ExportCache(tmp_path / "cache").put(KEY, artifact, ()) == ""
    assert ExportCache(tmp_path / "cache").get(KEY).entry is not None  # another job with the same secret
    assert not private_key_location.exists()
    monkeypatch.setenv(KEY_ENV, "short")
    assert "holds 5 characters; a cache key needs at least 32" in ExportCache(tmp_path / "other").unusable()
    monkeypatch.delenv(KEY_ENV)
    lookup = ExportCache(tmp_path / "cache").get(KEY)  # this machine's own key: not the CI's
    assert lookup.entry is None and "fails its HMAC check" in lookup.discarded


def test_the_key_file_is_made_once_private_and_outside_the_cache(tmp_path: Path, private_key_location: Path) -> None:
    cache = ExportCache(tmp_path / "cache")
    assert cache.unusable() == ""
    key = private_key_location.read_bytes()
    assert stat.S_IMODE(private_key_location.stat().st_mode) == 0o600 and len(key.strip()) == 64
    assert ExportCache(tmp_path / "elsewhere").unusable() == "" and private_key_location.read_bytes() == key
    assert [path.name for path in private_key_location.parent.iterdir()] == ["cache-key"]  # no temporary left
    private_key_location.chmod(0o644)
    assert "may be read or written by others (mode 0644" in ExportCache(tmp_path / "third").unusable()
    private_key_location.chmod(0o600)
    inside = ExportCache(tmp_path / "config")  # a cache directory that would hold the key
    assert "would be inside the export cache" in inside.unusable()


def test_a_sealed_entry_still_passes_the_artifact_gate(tmp_path: Path) -> None:
    """An entry this machine sealed is still checked like a stored artifact: no recurrence, no pass."""
    golden = GoldenStore(COMMITTED_GOLDEN).load(REFERENCE_ID)
    cache = ExportCache(tmp_path, secret=b"k" * 32)
    cache.put(KEY, Artifact(kind="onnx", data=constant_model(golden.tensors), producer={}), ())
    lookup = cache.get(KEY, built_in_rnn=True)
    assert lookup.entry is None and "recurrence" in lookup.discarded.lower()
    cache.put(KEY, Artifact(kind="onnx", data=stored(), producer={}), ())
    assert cache.get(KEY, built_in_rnn=True).entry is not None


def test_a_directory_data_file_and_a_symlinked_subdirectory_are_rebuilt_from_the_cli(tmp_path: Path) -> None:
    golden_copy(tmp_path)
    selection = ("--config", REFERENCE_ID, "--backend", f"{BACKEND},torchscript-trace", "--golden-dir", "golden",
                 "--json", "report.json")
    assert harness("run", *selection, cwd=tmp_path).returncode == 0
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    metas = {json.loads(path.read_text())["kind"]: path for path in cache.glob("*/*.json")}
    onnx_data = metas["onnx"].with_suffix(".onnx")
    onnx_data.unlink()
    (onnx_data / "inner").mkdir(parents=True)  # a directory where the data file belongs
    script_directory = metas["torchscript"].parent
    if script_directory != onnx_data.parent:  # a symlinked <key[:2]> leading out of the cache
        shutil.rmtree(script_directory)
        script_directory.symlink_to(outside)
    result = harness("run", *selection, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    sources = {cell["backend"]: cell["artifact_source"] for cell in
               json.loads((tmp_path / "report.json").read_text())["cells"]}
    assert sources[BACKEND].endswith(f"{onnx_data}: is a directory, not the entry's data)")
    assert onnx_data.is_file() and list(outside.iterdir()) == []
    if script_directory != onnx_data.parent:
        assert sources["torchscript-trace"].endswith(f"{script_directory}: is a symlink, not a directory of the cache)")
        assert script_directory.is_dir() and not script_directory.is_symlink()


def test_writes_and_clear_never_follow_a_symlink_out(tmp_path: Path) -> None:
    cache, outside = ExportCache(tmp_path / "cache", secret=b"k" * 32), tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "ab").symlink_to(outside)
    assert cache.put(KEY, Artifact(kind="onnx", data=stored(), producer={}), ()) == ""
    assert not (tmp_path / "cache" / "ab").is_symlink()
    assert [path.name for path in outside.iterdir()] == ["victim"]
    (tmp_path / "cache" / "cd").symlink_to(outside)
    (tmp_path / "cache" / "notes.txt").write_text("not the cache's")
    assert cache.clear() == 1
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == ["notes.txt"]
    assert (outside / "victim").read_text() == "keep me"
