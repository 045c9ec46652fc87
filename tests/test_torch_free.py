"""The torch-free install (README: Installing without torch): every command runs in a process where torch and
onnxscript (and every submodule of them) cannot be imported. The reading and replaying commands exit 0 on the
committed goldens, dynamo-exported ONNX artifacts included; the commands that build models say in one line that
they need torch, exit 2. A real torch-free venv is built by `.ci/run`, not here (too slow for a test)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "golden"
EXAMPLE = REPO / "examples" / "hello-char-model"
REFERENCE_ID = "rnn-h8-s0"
BLOCKED = ("torch", "onnxscript", "functorch", "torchvision")

# Runs `harness ARGV...` with the blocked packages unimportable: None in sys.modules for each (what
# tests/test_architecture.py does), and a finder that refuses their submodules too. Exit 99 if one got in.
WITHOUT_TORCH = f"""
import sys

BLOCKED = {BLOCKED!r}


class Refuse:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: this process stands for a torch-free install")
        return None


for name in BLOCKED:
    sys.modules[name] = None
sys.meta_path.insert(0, Refuse)
from harness.cli import main

code = main(sys.argv[1:])
loaded = sorted(name for name, module in sys.modules.items() if module is not None and name.split(".")[0] in BLOCKED)
if loaded:
    print(f"imported although blocked: {{loaded}}", file=sys.stderr)
    code = 99
sys.exit(code)
"""


def harness_without_torch(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_blocked_packages_really_cannot_be_imported() -> None:
    """The prelude is what the other tests rely on: torch, a submodule of it and onnxscript all fail."""
    check = "\nfor name in ('torch', 'torch.nn', 'onnxscript'):\n" \
            "    try:\n        __import__(name)\n    except ImportError:\n        print('blocked', name)\n"
    prelude = WITHOUT_TORCH.split("from harness.cli import main")[0]
    result = subprocess.run([sys.executable, "-c", prelude + check], capture_output=True, text=True, check=False)
    assert result.stdout.split("\n")[:3] == ["blocked torch", "blocked torch.nn", "blocked onnxscript"], result.stderr


def cells_by_backend(report: Path) -> dict[str, list[str]]:
    verdicts: dict[str, list[str]] = {}
    for cell in json.loads(report.read_text())["cells"]:
        verdicts.setdefault(cell["backend"], []).append(cell["verdict"])
    return verdicts


@pytest.mark.parametrize("backends", [("--backend", "onnx"), ()], ids=["onnx", "default"])
def test_replay_judges_every_onnx_artifact_dynamo_ones_included(tmp_path: Path, backends: tuple[str, ...]) -> None:
    """No ONNX artifact is `unavailable` for want of onnxscript: loading a stored file needs none. With no
    --backend, the torch backends' artifacts are unavailable (they need torch), and the run still exits 0."""
    report = tmp_path / "replay.json"
    result = harness_without_torch("replay", *backends, "--quiet", "--golden-dir", str(GOLDEN), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = cells_by_backend(report)
    for name in ("onnxruntime-legacy", "onnxruntime-dynamo", "onnx-reference-legacy", "onnx-reference-dynamo"):
        assert "unavailable" not in verdicts[name], name
        assert verdicts[name].count("close") + verdicts[name].count("identical") >= 40, (name, verdicts[name])
    torch_backends = {"torchscript-script", "torchscript-trace", "torch-export"}
    assert set(verdicts) >= torch_backends if not backends else not set(verdicts) & torch_backends
    for name in torch_backends & set(verdicts):
        assert set(verdicts[name]) == {"unavailable"}, name
    assert "needs torch, which cannot be imported here" in result.stdout or backends


def test_replay_of_the_example_without_torch(tmp_path: Path) -> None:
    """A user's suite replays from its manifests: the factory's module (which imports torch) is never needed."""
    report = tmp_path / "example.json"
    result = harness_without_torch("replay", "--backend", "onnx", "--quiet", "--suite", str(EXAMPLE / "suite.toml"),
                                   "--golden-dir", str(EXAMPLE / "golden"), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = cells_by_backend(report)
    assert verdicts["onnxruntime-dynamo"].count("close") + verdicts["onnxruntime-dynamo"].count("identical") >= 1
    assert all("unavailable" not in cells for cells in verdicts.values()), verdicts


@pytest.mark.parametrize(("argv", "expected"), [
    (("list",), REFERENCE_ID),
    (("list", "--backends"), "eager  (unavailable here: package torch is not installed"),
    (("env",), "cuda: not checked"),
    (("show", REFERENCE_ID, "--golden-dir", str(GOLDEN)), f"{REFERENCE_ID}  (content hash"),
    (("review", str(GOLDEN), "--golden-dir", str(GOLDEN)), "no golden changed"),
    (("prune", "--golden-dir", str(GOLDEN)), "no stale goldens"),
], ids=["list", "list-backends", "env", "show", "review", "prune"])
def test_reading_commands_work_without_torch(argv: tuple[str, ...], expected: str) -> None:
    result = harness_without_torch(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout
    assert "Traceback" not in result.stderr


def test_list_backends_calls_the_onnx_backends_available_without_onnxscript() -> None:
    """They load stored files; only exporting (which needs torch here anyway) would need onnxscript."""
    lines = harness_without_torch("list", "--backends").stdout.splitlines()
    for name in ("onnxruntime-dynamo", "onnx-reference-dynamo", "onnxruntime-legacy", "onnx-reference-legacy"):
        assert next(line for line in lines if line.startswith(f"{name}  (")).startswith(f"{name}  (available;")


def test_bundle_and_merge_work_without_torch(tmp_path: Path) -> None:
    """A dynamo artifact bundled for Polygraphy, and a replay's report merged, in the same torch-free process kind."""
    out = tmp_path / "bundle"
    result = harness_without_torch("bundle", REFERENCE_ID, str(out), "--backend", "onnxruntime-dynamo",
                                   "--golden-dir", str(GOLDEN))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "model.onnx").is_file() and "polygraphy run model.onnx" in result.stdout
    report = tmp_path / "r.json"
    replayed = harness_without_torch("replay", "--backend", "onnxruntime-legacy", "--config", REFERENCE_ID, "--quiet",
                                     "--golden-dir", str(GOLDEN), "--json", str(report))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    merged = harness_without_torch("merge", str(report))
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert "OK:" in merged.stdout


@pytest.mark.parametrize("command", ["run", "check", "probe", "record"])
def test_commands_that_build_models_say_they_need_torch_in_one_line(tmp_path: Path, command: str) -> None:
    new_dir = tmp_path / "goldens"
    result = harness_without_torch(command, *(("--golden-dir", str(new_dir)) if command in ("run", "record") else ()))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"harness: error: harness {command} needs torch, which cannot be imported here")
    assert "pip install -c constraints.txt -e ." in result.stderr
    assert not new_dir.exists()  # record said so before creating anything


def test_the_documented_install_takes_every_dependency_but_torch_and_onnxscript() -> None:
    """README's command and .ci/run's step install the same packages: pyproject's dependencies less the two that
    build and export models. A dependency added to pyproject and forgotten there fails here."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = sorted(re.split(r"[<>=!~;\[ ]", dependency)[0] for dependency in dependencies)
    wanted = [name for name in wanted if name not in ("torch", "onnxscript")]
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Installing without torch (verification-only CI)")[1].split("\n## ")[0]
    for text, where in ((section, "README"), ((REPO / ".ci" / "run").read_text(), ".ci/run")):
        match = re.search(r"pip install -c constraints\.txt ([a-z ]+?) &&", text)
        assert match, f"{where}: no torch-free install command"
        assert sorted(match[1].split()) == wanted, where
        assert "--no-deps -e ." in text, where
