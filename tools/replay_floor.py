"""The bare floor for `harness replay`: the committed ONNX artifacts loaded into their runtimes and compared
with their goldens by np.allclose, in one process, with nothing else (no schema checks, no gates, no
statistics, no report). `harness replay` is quoted against this script's whole-process time.

    python tools/replay_floor.py [GOLDEN_DIR]         # ONNX Runtime cells (replay --backend onnxruntime-legacy,...)
    python tools/replay_floor.py --family onnx [DIR]  # and the reference evaluator's (replay --backend onnx)

Only the cells harness replays are run: those whose backend fingerprint says the cell ran at record time.
Prints cells, passing cells and seconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from harness.model.config import RnnConfig
from harness.model.inputs import build_inputs


def session_for(backend: str, path: Path) -> Any:
    """A runnable model of the backend's runtime: onnxruntime, or onnx's reference evaluator."""
    if backend.startswith("onnx-reference-"):
        import onnx
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(onnx.load(str(path)))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(golden_dir: Path, family: str) -> None:
    started = time.perf_counter()
    cells = passed = 0
    prefixes = ("onnxruntime-", "onnx-reference-") if family == "onnx" else ("onnxruntime-",)
    for manifest_path in sorted(golden_dir.glob("*.json")):
        manifest = json.loads(manifest_path.read_text())
        inputs = build_inputs(RnnConfig.from_dict(manifest["config"]))
        with np.load(golden_dir / manifest["tensors_file"], allow_pickle=False) as tensors:
            golden = {name: tensors[name] for name in manifest["tensors"]}
        for backend, entry in manifest.get("artifacts", {}).items():
            ran = manifest.get("backend_fingerprints", {}).get(backend, {}).get("status") == "ok"
            if entry["kind"] != "onnx" or not backend.startswith(prefixes) or not ran:
                continue
            outputs = session_for(backend, golden_dir / "artifacts" / entry["file"]).run(list(golden), inputs)
            cells += 1
            passed += all(golden[name].dtype.kind == "f" and np.allclose(actual, golden[name], rtol=1e-5, atol=2e-6)
                          for name, actual in zip(golden, outputs, strict=True))
    print(f"{cells} cells, {passed} pass, {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    chosen = "onnxruntime"
    if arguments[:1] == ["--family"]:
        chosen, arguments = arguments[1], arguments[2:]
    main(Path(arguments[0]) if arguments else Path(__file__).resolve().parents[1] / "golden", chosen)
