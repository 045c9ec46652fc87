"""`python -m harness.backends.artifact_worker DIR`: load one stored artifact with its backend and run it twice,
in a bounded process of its own (harness.backends.bounded), for artifacts no static check can bound.

Reads DIR/request.json ({"backend", "kind", "output_names", "threads"}), DIR/artifact.bin, DIR/inputs.npz and,
when there, DIR/probe.npz; writes DIR/outputs.npz (``run1_<name>``, ``run2_<name>``, ``probe_<name>``) and then
DIR/result.json (prepare and run seconds, the upstream messages): the parent reads the result only once the
worker has exited with 0.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REQUEST, ARTIFACT, INPUTS, OUTPUTS, RESULT = "request.json", "artifact.bin", "inputs.npz", "outputs.npz", "result.json"
PROBE = "probe.npz"  # optional: a second input, run once more (outputs ``probe_<name>``)


def main(argv: Sequence[str]) -> int:
    from harness.backends import get_backend
    from harness.backends.base import Artifact, ArtifactBackend
    from harness.backends.bounded import bound_own_memory, worker_parent
    from harness.backends.capture import captured_upstream_messages
    from harness.backends.lifetime import die_with_parent

    die_with_parent(worker_parent())  # a killed replay must not leave an artifact running

    workdir = Path(argv[0])
    request = json.loads((workdir / REQUEST).read_text(encoding="utf-8"))
    backend = get_backend(request["backend"])
    if not isinstance(backend, ArtifactBackend):
        raise SystemExit(f"backend {request['backend']} stores no artifact")
    for package in backend.loader_packages:  # imported before the bound: only the artifact's run is bounded
        module = __import__(package)
        if package == "torch":
            module.set_num_threads(request["threads"])
    with np.load(workdir / INPUTS, allow_pickle=False) as saved:
        inputs = {name: saved[name] for name in saved.files}
    probe: dict[str, np.ndarray] = {}
    if (workdir / PROBE).exists():
        with np.load(workdir / PROBE, allow_pickle=False) as saved:
            probe = {name: saved[name] for name in saved.files}
    artifact = Artifact(kind=request["kind"], data=(workdir / ARTIFACT).read_bytes(), producer={})
    bound_own_memory()
    with captured_upstream_messages() as upstream:
        started = time.perf_counter()
        model = backend.load(artifact, request["output_names"])
        loaded = time.perf_counter()
        first = model.run(inputs)
        ran = time.perf_counter()
        second = model.run(inputs)
        probed = model.run(probe) if probe else {}
    arrays: dict[str, Any] = {f"run{index}_{name}": array for index, outputs in enumerate((first, second), start=1)
                              for name, array in outputs.items()}
    arrays.update({f"probe_{name}": array for name, array in probed.items()})
    np.savez(workdir / OUTPUTS, **arrays)
    result = {"prepare_seconds": loaded - started, "run_seconds": ran - loaded, "notes": list(upstream)}
    partial = workdir / f"{RESULT}.partial"
    partial.write_text(json.dumps(result), encoding="utf-8")
    partial.replace(workdir / RESULT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
