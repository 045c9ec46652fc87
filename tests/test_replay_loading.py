"""Replay needs what loading a stored artifact needs, never what exporting one needs: with torch installed but
onnxscript missing (a slim image that exports nothing), the dynamo ONNX artifacts are still judged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WITHOUT_ONNXSCRIPT = """
import sys

sys.modules["onnxscript"] = None  # torch stays importable
from harness.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_dynamo_artifacts_replay_where_torch_is_installed_but_onnxscript_is_not(tmp_path: Path) -> None:
    report = tmp_path / "replay.json"
    argv = ["replay", "--backend", "onnxruntime-dynamo,onnx-reference-dynamo", "--config", "rnn-h8-s0", "--config",
            "lstm-h8-s0", "--quiet", "--json", str(report)]
    result = subprocess.run([sys.executable, "-c", WITHOUT_ONNXSCRIPT, *argv], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = {(cell["config"], cell["backend"]): cell["verdict"] for cell in json.loads(report.read_text())["cells"]}
    assert set(verdicts) == {(config, backend) for config in ("rnn-h8-s0", "lstm-h8-s0")
                             for backend in ("onnxruntime-dynamo", "onnx-reference-dynamo")}
    assert set(verdicts.values()) <= {"identical", "close"}, verdicts
