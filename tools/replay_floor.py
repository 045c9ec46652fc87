"""The bare floor for `harness replay`: the committed ONNX artifacts loaded into onnxruntime and compared
with their goldens by np.allclose, in one process, with nothing else (no schema checks, no statistics, no
report). `harness replay --backend onnxruntime` is quoted against this script's whole-process time.

    python tools/replay_floor.py [GOLDEN_DIR]      # prints cells, passing cells and seconds
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime

from harness.model.config import RnnConfig
from harness.model.inputs import build_inputs


def main(golden_dir: Path) -> None:
    started = time.perf_counter()
    cells = passed = 0
    for manifest_path in sorted(golden_dir.glob("*.json")):
        manifest = json.loads(manifest_path.read_text())
        inputs = build_inputs(RnnConfig.from_dict(manifest["config"]))
        with np.load(golden_dir / manifest["tensors_file"], allow_pickle=False) as tensors:
            golden = {name: tensors[name] for name in manifest["tensors"]}
        for entry in manifest.get("artifacts", {}).values():
            if entry["kind"] != "onnx":
                continue
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(golden_dir / "artifacts" / entry["file"]), options,
                                                   providers=["CPUExecutionProvider"])
            outputs = session.run(list(golden), inputs)
            cells += 1
            passed += all(np.allclose(actual, golden[name], rtol=1e-5, atol=2e-6)
                          for name, actual in zip(golden, outputs, strict=True))
    print(f"{cells} cells, {passed} pass, {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "golden")
