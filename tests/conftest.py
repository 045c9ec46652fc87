"""Shared fixtures: temporary golden copies (never the committed ones) and an in-process CLI."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx  # noqa: F401  # imported once, here: a pytester in-process run that imports it again aborts (nanobind)
import pytest
from hypothesis import HealthCheck, settings

from harness.cli import main
from harness.store.cache import CACHE_ENV
from harness.store.cache_secret import KEY_ENV
from harness.store.golden import GoldenStore

pytest_plugins = ["pytester"]

# Hypothesis profiles (tests/test_fuzz.py): "default" keeps the normal run fast; "fuzz" digs deeper:
#   HYPOTHESIS_PROFILE=fuzz python -m pytest tests/test_fuzz.py
# too_slow is suppressed: drawing nested documents (and writing their TOML/JSON text) can cross
# Hypothesis's generation-time threshold on a loaded 2-core machine, which says nothing about the
# harness and would fail the run spuriously.
_FUZZ_HEALTH = [HealthCheck.too_slow]
settings.register_profile("default", max_examples=50, deadline=None, suppress_health_check=_FUZZ_HEALTH)
settings.register_profile("fuzz", max_examples=2000, deadline=None, suppress_health_check=_FUZZ_HEALTH)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The export cache of this test session: fresh, never the user's (~/.cache/harness). Shared by the tests of
# one process, so each model is exported once; tests that patch an exporter run with --no-cache.
os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="harness-test-cache-")
# ... and its HMAC key: one of this session's, never the user's ~/.config/harness/cache-key (store.cache_secret).
os.environ[KEY_ENV] = secrets.token_hex(32)

REPO = Path(__file__).resolve().parent.parent
COMMITTED_GOLDEN = REPO / "golden"
REFERENCE_ID = "rnn-h8-s0"


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `harness ARGS...` in this process and capture what it prints."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def golden_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy the committed goldens of the given config ids into a fresh temporary directory."""

    def copy(*config_ids: str) -> Path:
        target = tmp_path / "golden"
        target.mkdir(exist_ok=True)
        source = GoldenStore(COMMITTED_GOLDEN)
        for config_id in config_ids:
            manifest = source.manifest_path(config_id)
            shutil.copy2(manifest, target / manifest.name)
            for tensors in COMMITTED_GOLDEN.glob(f"{config_id}.*.npz"):
                shutil.copy2(tensors, target / tensors.name)
            for artifact in (COMMITTED_GOLDEN / "artifacts").glob(f"{config_id}.*"):
                (target / "artifacts").mkdir(exist_ok=True)
                shutil.copy2(artifact, target / "artifacts" / artifact.name)
        return target

    return copy


def write_suite(path: Path, *cases: str) -> Path:
    """A suite file whose first case is the reference case, then the given [[case]] bodies."""
    bodies = ['cell = "rnn_tanh"', *cases]
    path.write_text("".join(f"[[case]]\n{body}\n\n" for body in bodies), encoding="utf-8")
    return path


def perturb_golden(golden_dir: Path, config_id: str, tensor: str, index: tuple[int, ...], delta: float) -> None:
    """Re-record a golden with one element moved, through the store (as a golden from elsewhere would be)."""
    import dataclasses

    import numpy as np

    store = GoldenStore(golden_dir)
    golden = store.load(config_id)
    tensors = {name: array.copy() for name, array in golden.tensors.items()}
    tensors[tensor][index] += np.asarray(delta, dtype=tensors[tensor].dtype)
    store.write(dataclasses.replace(golden, tensors=tensors), force=True)
