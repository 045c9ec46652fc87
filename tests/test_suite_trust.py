"""A suite that names a model is code (like a conftest.py), and only then: the commands that read goldens
never import a user's module, and a module beside a suite can never shadow an installed package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HARNESS = [sys.executable, "-m", "harness"]

MODEL = '''
import pathlib

pathlib.Path(__file__).with_name("imported.marker").write_text("the suite's module ran")

import torch


def build(config):
    return torch.nn.GRU(4, config.hidden_size)
'''

SHADOW = '''
import pathlib

pathlib.Path(__file__).with_name("shadowed.marker").write_text("onnxruntime.py beside the suite ran")
raise ImportError("a planted onnxruntime")
'''

SUITE = '''[suite]
name = "trust"

[[case]]
model = "planted_model:build"
cell = "gru"
hidden_size = 6
'''


CONFIG_ID = "planted-model.build-gru-h6-s0"


def suite_dir(tmp_path: Path) -> Path:
    """tmp_path/suite/ holding the suite, its model module and a planted onnxruntime.py; tmp_path/golden/."""
    directory = tmp_path / "suite"
    directory.mkdir()
    (directory / "planted_model.py").write_text(MODEL, encoding="utf-8")
    (directory / "onnxruntime.py").write_text(SHADOW, encoding="utf-8")
    (directory / "suite.toml").write_text(SUITE, encoding="utf-8")
    (tmp_path / "golden").mkdir()
    return directory


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "HARNESS_MODEL_PATH"}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([*HARNESS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A suite naming a model, its golden recorded (which imports the model), the marker then removed."""
    directory = suite_dir(tmp_path_factory.mktemp("recorded"))
    result = harness("record", "--suite", str(directory / "suite.toml"), "--golden-dir", "golden",
                     "--backend", "eager,onnxruntime-legacy", cwd=directory.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    (directory / "imported.marker").unlink()
    return directory


@pytest.mark.parametrize("command", [
    ("list", "--suite", "suite/suite.toml"),
    ("replay", "--suite", "suite/suite.toml", "--golden-dir", "golden", "--backend", "onnxruntime-legacy"),
    ("prune", "--suite", "suite/suite.toml", "--golden-dir", "golden"),
    ("show", "--golden-dir", "golden", CONFIG_ID),
    ("bundle", "--suite", "suite/suite.toml", "--golden-dir", "golden", "--backend", "onnxruntime-legacy",
     CONFIG_ID, "bundle"),
])
def test_commands_that_read_goldens_never_import_the_suites_model(recorded: Path, command: tuple[str, ...]) -> None:
    result = harness(*command, cwd=recorded.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (recorded / "imported.marker").exists()
    assert not (recorded / "shadowed.marker").exists()


def test_the_plugin_collects_without_importing_the_model(tmp_path: Path) -> None:
    suite_dir(tmp_path)
    directory = tmp_path / "suite"
    env = {key: value for key, value in os.environ.items() if key != "HARNESS_MODEL_PATH"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "--harness",
         f"--harness-suite={directory / 'suite.toml'}", f"--harness-golden-dir={tmp_path / 'golden'}",
         "--harness-backend=eager", str(directory)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert CONFIG_ID in result.stdout, result.stdout + result.stderr
    assert not (directory / "imported.marker").exists()


def test_run_imports_the_model_but_no_module_beside_the_suite_shadows_a_package(tmp_path: Path) -> None:
    """`run` builds the model: the suite's module runs (it is code). Its directory goes last on sys.path, so
    the real onnxruntime is imported, never the planted onnxruntime.py beside it."""
    suite_dir = globals()["suite_dir"](tmp_path)
    result = harness("record", "--suite", str(suite_dir / "suite.toml"), "--golden-dir", "golden",
                     "--backend", "eager,onnxruntime-legacy", cwd=suite_dir.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    result = harness("run", "--suite", str(suite_dir / "suite.toml"), "--golden-dir", "golden",
                     "--backend", "eager,onnxruntime-legacy", cwd=suite_dir.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (suite_dir / "imported.marker").exists()
    assert not (suite_dir / "shadowed.marker").exists()
