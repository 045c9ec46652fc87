"""Ids too long for a file name. A valid suite with 300 `lengths` makes a 625-character id, and run, record,
replay, show and the plugin crashed with `OSError: File name too long`. Now every file named after an id
takes store.paths.file_stem: the id itself up to 100 characters, else a readable prefix and a digest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.model.environment import Environment
from harness.store.golden import GoldenStore
from harness.store.paths import MAX_STEM, file_stem
from harness.store.user_golden import UserGolden, UserGoldenStore

REPO = Path(__file__).resolve().parent.parent
HARNESS = (sys.executable, "-m", "harness")  # the interpreter running the tests (a venv, tox or nox)
BACKEND = "onnxruntime-legacy"
LENGTHS = [1 + index % 5 for index in range(300)]
SUITE = f"""[suite]
name = "long"

[[case]]
cell = "rnn_tanh"
input = "gaussian"
seq_len = 5
batch = 300
lengths = {LENGTHS}
"""


def test_a_long_id_gets_a_short_stable_stem_and_a_short_one_keeps_its_own() -> None:
    assert file_stem("rnn-h8-s0") == "rnn-h8-s0" and file_stem("x" * MAX_STEM) == "x" * MAX_STEM
    long_id = "rnn-h8-gauss-t5b300-len" + "_".join(map(str, LENGTHS)) + "-s0"
    stem = file_stem(long_id)
    assert len(long_id) == 625 and len(stem) <= MAX_STEM and stem.startswith(long_id[:64])
    assert stem == "rnn-h8-gauss-t5b300-len1_2_3_4_5_1_2_3_4_5_1_2_3_4_5_1_2_3_4_5_1-hd8cedf6ad92e10d5f14ade55f645d6ac"
    assert file_stem(stem) == stem  # a stem is its own stem: a manifest found by its file name loads
    assert file_stem(long_id[:-1] + "1") != stem  # ids that differ only at the end stay apart


def test_a_user_golden_with_a_long_name_round_trips(tmp_path: Path) -> None:
    name = "case-" + "a" * 300
    environment = Environment.from_dict({})
    golden = UserGolden(name=name, tensors={"y": np.arange(3, dtype=np.float32)}, recorded_at="now",
                        environment=environment)
    path = UserGoldenStore(tmp_path).write(golden)
    assert path.name == f"{file_stem(name)}.json"
    assert all(len(child.name) < 160 for child in tmp_path.iterdir())
    assert UserGoldenStore(tmp_path).load(name).name == name
    assert UserGoldenStore(tmp_path).load(path.stem).name == name  # found by its file, it still names itself


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 300-length suite recorded with one exporting backend, from the CLI; the directory and the long id."""
    work = tmp_path_factory.mktemp("long-ids")
    (work / "suite.toml").write_text(SUITE)
    listed = harness("list", "--suite", "suite.toml", cwd=work)
    config_id = listed.stdout.split()[0]
    assert len(config_id) == 625, listed.stdout
    result = harness("record", "--suite", "suite.toml", "--golden-dir", "golden", "--backend", BACKEND, cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    return work, config_id


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cwd / "cache"), "XDG_CONFIG_HOME": str(cwd / "config")}
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
                          check=False)


def test_record_names_every_file_after_the_stem_and_the_manifest_keeps_the_whole_id(
        recorded: tuple[Path, str]) -> None:
    work, config_id = recorded
    stem = file_stem(config_id)
    names = sorted(path.relative_to(work / "golden").as_posix() for path in (work / "golden").rglob("*")
                   if path.is_file() and path.name != ".harness.lock")
    assert [name.split(".")[0].removeprefix("artifacts/") for name in names] == [stem] * 3, names
    manifest = json.loads((work / "golden" / f"{stem}.json").read_text())
    assert manifest["config_id"] == config_id and manifest["artifacts"][BACKEND]["file"].startswith(f"{stem}.")
    assert GoldenStore(work / "golden").stored_ids() == [config_id]


@pytest.mark.parametrize("command", ["run", "replay"])
def test_run_and_replay_judge_a_long_id(recorded: tuple[Path, str], command: str) -> None:
    work, _ = recorded
    result = harness(command, "--suite", "suite.toml", "--golden-dir", "golden", "--backend", BACKEND, cwd=work)
    assert result.returncode == 0 and "1 cell: 1 " in result.stdout, result.stdout + result.stderr


def test_show_finds_a_long_id_by_its_id_and_by_its_file(recorded: tuple[Path, str]) -> None:
    work, config_id = recorded
    by_id = harness("show", config_id, "--golden-dir", "golden", cwd=work)
    by_file = harness("show", f"golden/{file_stem(config_id)}.json", cwd=work)
    for result in (by_id, by_file):
        assert result.returncode == 0 and config_id in result.stdout, result.stdout + result.stderr


def test_prune_keeps_a_long_id_golden_its_suite_uses(recorded: tuple[Path, str]) -> None:
    work, _ = recorded
    result = harness("prune", "--suite", "suite.toml", "--golden-dir", "golden", "--yes", cwd=work)
    assert result.returncode == 0 and "no stale goldens" in result.stdout, result.stdout + result.stderr


def test_the_plugin_judges_a_long_id(recorded: tuple[Path, str]) -> None:
    work, _ = recorded
    env = {**os.environ, "HARNESS_CACHE_DIR": str(work / "cache"), "XDG_CONFIG_HOME": str(work / "config")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--harness",
                             "--harness-suite=suite.toml", "--harness-golden-dir=golden",
                             f"--harness-backend={BACKEND}"], capture_output=True, text=True, cwd=work, env=env,
                            timeout=300, check=False)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr
