"""Speed as a feature: pytest-benchmark timings of each backend's steady-state run and of preparation.

Compare within a group (`--benchmark-group-by=group`): the ratios between backends are the result.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends import get_backend
from harness.backends.capture import captured_upstream_messages
from harness.model.case import build_case
from harness.model.config import RnnConfig

BACKENDS = ["eager", "torchscript-script", "torchscript-trace", "onnxruntime-legacy", "onnxruntime-dynamo"]
CONFIGS = {
    "reference": RnnConfig(),
    "lstm-h128-t32b8": RnnConfig(cell="lstm", hidden_size=128, input="random", seq_len=32, batch=8),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_run_speed(benchmark: Any, backend: str, config_name: str) -> None:
    case = build_case(CONFIGS[config_name])
    with captured_upstream_messages():
        model = get_backend(backend).prepare(case)
    benchmark.group = f"run {config_name}"
    outputs = benchmark.pedantic(model.run, args=(case.inputs,), rounds=30, iterations=5, warmup_rounds=2)
    assert list(outputs) == case.output_names


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepare_speed(benchmark: Any, backend: str) -> None:
    case = build_case(CONFIGS["reference"])
    selected = get_backend(backend)

    def prepare() -> object:
        with captured_upstream_messages():
            return selected.prepare(case)

    benchmark.group = "prepare reference"
    rounds = 2 if backend == "onnxruntime-dynamo" else 5
    assert benchmark.pedantic(prepare, rounds=rounds, iterations=1) is not None


# --- stored artifacts: replay, the export cache, bundles (issue: artifacts) -------------------------------

REPLAYED = "rnn-h8-s0"


def test_replay_one_cell_speed(benchmark: Any) -> None:
    """`harness replay` of one stored ONNX artifact, in process: load, verify, run twice, judge."""
    from harness.session.core import Session
    from harness.session.replay import replay
    from harness.session.settings import Settings

    def replay_once() -> object:
        session = Session(Settings(configs=(REPLAYED,), backends=("onnxruntime-legacy",)))
        return replay(session)

    benchmark.group = "replay one ONNX cell vs the bare floor"
    report = benchmark.pedantic(replay_once, rounds=20, iterations=1, warmup_rounds=1)
    assert report.exit_code == 0  # type: ignore[attr-defined]


def test_replay_floor_speed(benchmark: Any) -> None:
    """The bare floor for the same cell: read the files, one InferenceSession, one run, np.allclose."""
    import json

    import numpy as np
    import onnxruntime

    from tests.conftest import COMMITTED_GOLDEN

    def floor() -> bool:
        manifest = json.loads((COMMITTED_GOLDEN / f"{REPLAYED}.json").read_text())
        with np.load(COMMITTED_GOLDEN / manifest["tensors_file"], allow_pickle=False) as tensors:
            golden = {name: tensors[name] for name in manifest["tensors"]}
        entry = manifest["artifacts"]["onnxruntime-legacy"]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(COMMITTED_GOLDEN / "artifacts" / entry["file"]), options,
                                               providers=["CPUExecutionProvider"])
        from harness.model.inputs import hello_batch

        outputs = session.run(list(golden), {"input": hello_batch()})
        return all(np.allclose(a, golden[n], rtol=1e-5, atol=2e-6) for n, a in zip(golden, outputs, strict=True))

    benchmark.group = "replay one ONNX cell vs the bare floor"
    assert benchmark.pedantic(floor, rounds=20, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("step", ["gate", "InferenceSession"])
def test_gate_against_loading_speed(benchmark: Any, step: str) -> None:
    """What the ONNX gate adds to a replay (parse, allow-lists, shape inference, recurrence) against what
    loading the same artifact costs anyway (an onnxruntime InferenceSession)."""
    import json

    import onnxruntime

    from harness.store.gates import verify_artifact
    from tests.conftest import COMMITTED_GOLDEN

    entry = json.loads((COMMITTED_GOLDEN / f"{REPLAYED}.json").read_text())["artifacts"]["onnxruntime-legacy"]
    data = (COMMITTED_GOLDEN / "artifacts" / entry["file"]).read_bytes()

    def once() -> object:
        if step == "gate":
            return verify_artifact("onnx", data, where="bench", built_in_rnn=True)
        return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])

    benchmark.group = "ONNX gate vs loading (reference)"
    assert benchmark.pedantic(once, rounds=50, iterations=1, warmup_rounds=2) is not None


@pytest.mark.parametrize("source", ["export", "cache hit"])
def test_export_or_cache_hit_speed(benchmark: Any, source: str, tmp_path: Any) -> None:
    """The dynamo export of the reference case against loading it from the export cache."""
    from harness.session.artifacts import obtain
    from harness.store.cache import ExportCache

    case = build_case(CONFIGS["reference"])
    backend = get_backend("onnxruntime-dynamo")
    cache = ExportCache(tmp_path)
    obtain(case, backend, cache)  # type: ignore[arg-type]  # fills the cache

    def once() -> object:
        return obtain(case, backend, cache if source == "cache hit" else None)  # type: ignore[arg-type]

    benchmark.group = "dynamo export vs export cache hit (reference)"
    obtained = benchmark.pedantic(once, rounds=3 if source == "export" else 30, iterations=1)
    # The cache was filled by this process a moment before: a hit on an export made earlier in this run.
    expected = "cache (exported earlier in this run)" if source == "cache hit" else "exported"
    assert obtained.source == expected  # type: ignore[attr-defined]


def test_bundle_write_speed(benchmark: Any, tmp_path: Any) -> None:
    """`harness bundle` of the reference case's legacy ONNX artifact, in process."""
    import itertools

    from harness.session.bundle import bundle_for
    from harness.session.core import Session
    from harness.session.settings import Settings

    session = Session(Settings())
    counter = itertools.count()

    def write() -> object:
        return bundle_for(session, REPLAYED, "onnxruntime-legacy", tmp_path / f"bundle{next(counter)}")

    benchmark.group = "bundle write (reference)"
    written, _command = benchmark.pedantic(write, rounds=20, iterations=1)  # type: ignore[misc]
    assert len(written) == 8
