"""A backend from another package: a tiny distribution that declares one in the `harness.backends` entry-point
group is pip-installed (into a target directory) and runs in the matrix like a built-in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import COMMITTED_GOLDEN, REFERENCE_ID, REPO

PACKAGE = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "harness-tiny-backend"
        version = "0.1"

        [project.entry-points."harness.backends"]
        tiny-numpy = "harness_tiny_backend:TinyBackend"
    """,
    "harness_tiny_backend.py": '''
        """A plain RNN (tanh, one layer, no initial state) in NumPy, from the module's own weights."""
        import numpy as np

        from harness.backends.base import Availability


        class TinyModel:
            def __init__(self, weights):
                self.weights = weights

            def run(self, inputs):
                w_ih, w_hh, b_ih, b_hh = (self.weights[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                                      "bias_hh_l0"))
                x = inputs["input"]
                h = np.zeros((x.shape[1], w_hh.shape[0]), dtype=x.dtype)
                steps = []
                for x_t in x:
                    h = np.tanh(x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
                    steps.append(h)
                return {"output": np.stack(steps), "h_n": h[None]}


        class TinyBackend:
            name = "tiny-numpy"
            device = "cpu"
            description = "a plain tanh RNN in NumPy (an external package's backend)"
            uses_torch_kernels = False

            def availability(self):
                return Availability(available=True)

            def known_limitation(self, config):
                plain = (config.cell == "rnn_tanh" and config.num_layers == 1 and not config.bidirectional
                         and not config.batch_first and config.bias and config.initial_state == "zeros")
                return None if plain else "only one-layer, unidirectional, sequence-first tanh RNNs with bias"

            def is_slow(self, config):
                return False

            def prepare(self, case):
                if self.known_limitation(case.config):
                    raise NotImplementedError(self.known_limitation(case.config))
                weights = {k: v.detach().numpy() for k, v in case.module.state_dict().items()}
                return TinyModel(weights)
    ''',
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package pip-installed into a target directory (the venv itself is left alone)."""
    source, target = tmp_path_factory.mktemp("tiny-src"), tmp_path_factory.mktemp("tiny-site")
    for name, text in PACKAGE.items():
        (source / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert list(target.glob("harness_tiny_backend-0.1.dist-info"))
    return target


def _harness(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=300, check=False)


def test_an_installed_backend_runs_in_the_matrix(installed: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = _harness(installed, "run", "--config", REFERENCE_ID, "--config", "rnn-h8-l2-s0", "--backend",
                      "eager,tiny-numpy", "--golden-dir", str(COMMITTED_GOLDEN), "--json", str(report), "--quiet",
                      "--table")
    assert result.returncode == 0, result.stdout + result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("config"))
    assert header.split() == ["config", "eager", "tiny-numpy"]
    cells = {(cell["config"], cell["backend"]): cell for cell in json.loads(report.read_text())["cells"]}
    tiny = cells[(REFERENCE_ID, "tiny-numpy")]
    assert tiny["verdict"] == "close" and 0 < tiny["max_abs"] < 2e-6  # NumPy's tanh against ATen's
    assert tiny["oracle"]["max_abs"] < 1e-6  # and the float64 oracle agrees with it
    assert cells[("rnn-h8-l2-s0", "tiny-numpy")]["verdict"] == "unsupported"


def test_an_installed_backend_is_listed_with_its_limitation(installed: Path) -> None:
    result = _harness(installed, "list", "--backends")
    assert result.returncode == 0, result.stderr
    assert "tiny-numpy  (available; not run by default)" in result.stdout
    assert "a plain tanh RNN in NumPy (an external package's backend)" in result.stdout
    assert "only one-layer, unidirectional, sequence-first tanh RNNs with bias" in result.stdout


def test_without_the_package_the_backend_is_unknown() -> None:
    result = subprocess.run([sys.executable, "-m", "harness", "run", "--backend", "tiny-numpy", "--config",
                             REFERENCE_ID], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2 and "unknown backend 'tiny-numpy'" in result.stderr
