"""Confinement of the golden directory, tried from the CLI as an attacker would: a symlinked golden/artifacts
made `record --force` delete 5 files outside (a decoy among them), `prune --yes` delete outside, and the
plugin's force update empty the target. Each is now refused with one line and the decoy is untouched.
Also: what stands in the way of a record (a symlink is replaced, a directory refused), and bundle targets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import GoldenError
from harness.store.files import write_golden_files
from harness.store.golden import GoldenStore
from tests.conftest import COMMITTED_GOLDEN, REFERENCE_ID

REPO = Path(__file__).resolve().parent.parent
HARNESS = (sys.executable, "-m", "harness")  # the interpreter running the tests (a venv, tox or nox)
BACKEND = "onnxruntime-legacy"
ONNX_FILE = GoldenStore(COMMITTED_GOLDEN).load(REFERENCE_ID).artifacts[BACKEND].file


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cwd / "cache"), "XDG_CONFIG_HOME": str(cwd / "config")}
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
                          check=False)


def one_line_refusal(result: subprocess.CompletedProcess[str], words: str, *, code: int = 2) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    [line] = [line for line in output.splitlines() if words in line]
    assert line.startswith("harness: error: "), output


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.fixture
def attacked(tmp_path: Path) -> Path:
    """golden/ with the reference golden, whose artifacts/ is a symlink to a decoy directory outside holding
    the golden's artifacts, a store-named decoy and an unrelated file."""
    golden, decoy = tmp_path / "golden", tmp_path / "decoy"
    golden.mkdir()
    decoy.mkdir()
    for path in COMMITTED_GOLDEN.glob(f"{REFERENCE_ID}.*"):
        shutil.copy2(path, golden / path.name)
    for path in (COMMITTED_GOLDEN / "artifacts").glob(f"{REFERENCE_ID}.*"):
        shutil.copy2(path, decoy / path.name)
    (decoy / f"{REFERENCE_ID}.0123456789ab.onnx").write_bytes(b"decoy")
    (decoy / "unrelated.txt").write_text("precious")
    (golden / "artifacts").symlink_to(decoy)
    return tmp_path


def test_record_force_through_a_symlinked_artifacts_directory_is_refused(attacked: Path) -> None:
    before = snapshot(attacked / "decoy")
    result = harness("record", "--force", "--config", REFERENCE_ID, "--backend", BACKEND, "--golden-dir", "golden",
                     cwd=attacked)
    one_line_refusal(result, "golden/artifacts: is a symlink")
    assert snapshot(attacked / "decoy") == before


def test_prune_through_a_symlinked_artifacts_directory_is_refused(attacked: Path) -> None:
    manifest = (attacked / "golden" / f"{REFERENCE_ID}.json").read_text()
    (attacked / "golden" / "old-s0.json").write_text(manifest.replace(f'"config_id": "{REFERENCE_ID}"',
                                                                      '"config_id": "old-s0"'))
    (attacked / "decoy" / "old-s0.0123456789ab.onnx").write_bytes(b"decoy of a stale golden")
    before = snapshot(attacked / "decoy")
    one_line_refusal(harness("prune", "--yes", "--golden-dir", "golden", cwd=attacked), "is a symlink")
    assert snapshot(attacked / "decoy") == before and (attacked / "golden" / "old-s0.json").exists()


@pytest.mark.parametrize("command", ["run", "replay"])
def test_reading_through_a_symlinked_artifacts_directory_is_refused(attacked: Path, command: str) -> None:
    result = harness(command, "--config", REFERENCE_ID, "--backend", BACKEND, "--golden-dir", "golden", cwd=attacked)
    one_line_refusal(result, "golden/artifacts: is a symlink")


def test_the_plugins_force_update_through_a_symlinked_artifacts_directory_is_refused(attacked: Path) -> None:
    before = snapshot(attacked / "decoy")
    env = {**os.environ, "HARNESS_CACHE_DIR": str(attacked / "cache"), "XDG_CONFIG_HOME": str(attacked / "config")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--harness",
                             "--harness-golden-dir=golden", f"--harness-backend={BACKEND}", "--harness-update",
                             "--harness-force-update", "-k", REFERENCE_ID], capture_output=True, text=True,
                            cwd=attacked, env=env, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output  # pytest's usage error, before any item records
    assert "ERROR: golden/artifacts: is a symlink" in output and "Traceback" not in output, output
    assert snapshot(attacked / "decoy") == before


def test_a_symlink_where_an_artifact_belongs_is_replaced_by_the_record(tmp_path: Path) -> None:
    golden, outside = tmp_path / "golden", tmp_path / "outside.onnx"
    (golden / "artifacts").mkdir(parents=True)
    for path in COMMITTED_GOLDEN.glob(f"{REFERENCE_ID}.*"):
        shutil.copy2(path, golden / path.name)
    artifact = golden / "artifacts" / ONNX_FILE
    shutil.copy2(COMMITTED_GOLDEN / "artifacts" / ONNX_FILE, outside)
    artifact.symlink_to(outside)
    before = outside.read_bytes()
    recorded = harness("record", "--force", "--config", REFERENCE_ID, "--backend", BACKEND, "--golden-dir", "golden",
                       cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert not artifact.is_symlink() and artifact.read_bytes() == before == outside.read_bytes()
    replayed = harness("replay", "--config", REFERENCE_ID, "--backend", BACKEND, "--golden-dir", "golden",
                       cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr  # the new golden is usable


def test_a_directory_where_a_golden_file_belongs_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    root = tmp_path / "golden"
    (root / "artifacts" / "g.0123456789ab.onnx").mkdir(parents=True)
    with pytest.raises(GoldenError, match="a directory is in the way of the golden's artifact; remove it"):
        write_golden_files(root, "g", {}, lambda tensors_file: {}, {"g.0123456789ab.onnx": b"model"})
    assert sorted(path.name for path in root.iterdir()) == [".harness.lock", "artifacts"]


def test_a_lock_file_that_is_a_symlink_is_never_opened(tmp_path: Path) -> None:
    root, victim = tmp_path / "golden", tmp_path / "victim.txt"
    root.mkdir()
    victim.write_text("keep me")
    (root / ".harness.lock").symlink_to(victim)
    with pytest.raises(GoldenError, match="the lock file is a symlink"):
        write_golden_files(root, "g", {}, lambda tensors_file: {})
    assert victim.read_text() == "keep me"


def test_leftover_cleanup_never_reaches_outside(tmp_path: Path) -> None:
    """An orphan-looking symlink (store-named, no manifest names it) is no leftover: neither it nor its target goes."""
    root, victim = tmp_path / "golden", tmp_path / "victim.npz"
    root.mkdir()
    victim.write_bytes(b"keep me")
    (root / "g.0123456789ab.npz").symlink_to(victim)
    (root / ".g.json.abc.tmp").write_bytes(b"")
    write_golden_files(root, "g", {}, lambda tensors_file: {})
    assert victim.read_bytes() == b"keep me" and (root / "g.0123456789ab.npz").is_symlink()
    assert not (root / ".g.json.abc.tmp").exists()


@pytest.mark.parametrize(("target", "words"), [
    ("link", "link: is a symlink; give a new or empty directory"),
    ("dangling", "dangling: is a symlink"),
    (".", ".: is the current or a parent directory"),
    ("..", "..: is the current or a parent directory"),
    ("/dev/null", "/dev/null: exists and is a special file, not a directory"),
])
def test_bundle_refuses_symlinked_and_special_targets(tmp_path: Path, target: str, words: str) -> None:
    work = tmp_path / "work"  # empty, so that '.' is an empty directory the bundle could not be renamed onto
    (tmp_path / "golden" / "artifacts").mkdir(parents=True)
    for path in COMMITTED_GOLDEN.glob(f"{REFERENCE_ID}.*"):
        shutil.copy2(path, tmp_path / "golden" / path.name)
    shutil.copy2(COMMITTED_GOLDEN / "artifacts" / ONNX_FILE, tmp_path / "golden" / "artifacts" / ONNX_FILE)
    (tmp_path / "real").mkdir()
    work.mkdir()
    (work / "link").symlink_to(tmp_path / "real")
    (work / "dangling").symlink_to(tmp_path / "nowhere")
    result = harness("bundle", REFERENCE_ID, target, "--backend", BACKEND, "--golden-dir", str(tmp_path / "golden"),
                     cwd=work)
    one_line_refusal(result, words)
    assert list((tmp_path / "real").iterdir()) == [] and not (tmp_path / "nowhere").exists()
    assert sorted(path.name for path in work.iterdir() if path.name not in ("cache", "config")) == ["dangling", "link"]
