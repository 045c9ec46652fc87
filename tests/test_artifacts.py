"""Stored artifacts: what record keeps, how the store guards it, replay without torch, and the two fault
injections that tell a runtime that moved from an exporter that changed."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.backends.base import ARTIFACT_SUFFIXES
from harness.store.golden import GoldenStore
from tests.conftest import COMMITTED_GOLDEN, REPO, CliResult

EXPORTING = ("torchscript-script", "torchscript-trace", "torch-export", "onnxruntime-legacy", "onnxruntime-dynamo",
             "onnx-reference-legacy", "onnx-reference-dynamo")
GRU = "gru-h8-s0"


def test_committed_goldens_store_one_artifact_per_exporting_backend() -> None:
    store = GoldenStore(COMMITTED_GOLDEN)
    golden = store.load(GRU)
    assert sorted(golden.artifacts) == sorted(EXPORTING)
    for backend, entry in golden.artifacts.items():
        data = store.artifact_bytes(golden, backend)
        assert len(data) == entry.size
        assert entry.file == f"{GRU}.{entry.sha256[:12]}{ARTIFACT_SUFFIXES[entry.kind]}"  # named by content
        assert entry.producer["versions"]["torch"].startswith("2.")
    legacy = golden.artifacts["onnxruntime-legacy"]
    assert legacy.kind == "onnx" and legacy.producer["opset_version"] == 17 and legacy.producer["dynamo"] is False
    assert legacy.structure is not None
    assert legacy.structure["recurrent_nodes"][0]["attributes"]["linear_before_reset"] == 1
    assert golden.artifacts["torchscript-trace"].kind == "torchscript"
    assert golden.artifacts["torch-export"].kind == "torch-export"
    # Named by content: ONNX Runtime and the reference evaluator ran the same export, stored once.
    assert golden.artifacts["onnx-reference-legacy"].file == legacy.file


def test_stored_artifacts_name_no_path_of_the_machine_that_recorded_them() -> None:
    """The dynamo exporter and torch.export write absolute source paths into node metadata; the stored models
    drop them."""
    for path in (COMMITTED_GOLDEN / "artifacts").iterdir():
        data = path.read_bytes()
        assert b"site-packages" not in data and b"/work/" not in data and str(REPO).encode() not in data, path.name


def test_the_default_suites_artifacts_stay_small_enough_to_commit() -> None:
    total = sum(path.stat().st_size for path in (COMMITTED_GOLDEN / "artifacts").iterdir())
    assert total < 32 * 1024**2


def test_an_edited_artifact_is_refused_in_one_line_and_costs_only_its_own_cell(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path]) -> None:
    golden_dir = golden_copy(GRU)
    artifact = golden_dir / "artifacts" / GoldenStore(golden_dir).load(GRU).artifacts["onnxruntime-legacy"].file
    artifact.write_bytes(artifact.read_bytes()[:-1] + b"\0")
    result = cli("replay", "--golden-dir", str(golden_dir), "--config", GRU, "--quiet")
    assert result.exit_code == 2 and result.err == "", result.out + result.err
    record = f"harness record --golden-dir {golden_dir} --force --config {GRU}"
    assert (f"    {artifact}: stored artifact of onnxruntime-legacy does not match the size and sha256 in its manifest "
            f"(edited or corrupt); record it again: {record}") in result.out.splitlines()
    # the backends that run that file are CORRUPT; the other artifacts are replayed and judged
    assert f"[1] golden of {GRU} refused (corrupt): 2 cells (CORRUPT): {GRU} (onnxruntime-legacy, " \
           "onnx-reference-legacy)" in result.out.splitlines()
    summary = result.out.splitlines()[-1]
    assert re.fullmatch(r"FAILED: 7 cells: (\d+ identical, )?(\d+ close, )?2 CORRUPT; .* exit 2", summary)
    assert re.search(r"^onnxruntime-dynamo +\d+ +\d+ +0 +0 +0 ", result.out, re.MULTILINE)


def test_a_manifest_naming_a_file_outside_the_store_is_refused(cli: Callable[..., CliResult],
                                                               golden_copy: Callable[..., Path]) -> None:
    golden_dir = golden_copy(GRU)
    manifest = golden_dir / f"{GRU}.json"
    document = json.loads(manifest.read_text())
    document["artifacts"]["onnxruntime-legacy"]["file"] = document["artifacts"]["onnxruntime-dynamo"]["file"]
    manifest.write_text(json.dumps(document))
    result = cli("replay", "--golden-dir", str(golden_dir), "--config", GRU, "--quiet")
    assert result.exit_code == 2 and result.err == "", result.out + result.err  # its cell is CORRUPT, the rest run
    refused = [line for line in result.out.splitlines() if "record it again:" in line]
    assert len(refused) == 1 and "is not this golden's" in refused[0], result.out
    assert " 1 CORRUPT; " in result.out.splitlines()[-1]
    document["artifacts"]["onnxruntime-legacy"]["file"] = "../evil.onnx"
    manifest.write_text(json.dumps(document))
    result = cli("replay", "--golden-dir", str(golden_dir), "--config", GRU, "--quiet")
    assert result.exit_code == 2 and result.err == "", result.out + result.err  # the manifest: every cell
    assert "corrupt golden manifest" in result.out and re.search(r"FAILED: (\d+) cells: \1 CORRUPT; ", result.out)


def test_orphan_artifacts_are_leftovers_and_prune_removes_artifacts(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir = golden_copy(GRU)
    orphan = golden_dir / "artifacts" / f"{GRU}.{'a' * 12}.onnx"
    orphan.write_bytes(b"left by an interrupted record")
    assert GoldenStore(golden_dir).leftovers() == (orphan,)
    suite = tmp_path / "suite.toml"
    suite.write_text('[[case]]\ncell = "rnn_tanh"\n')
    result = cli("prune", "--golden-dir", str(golden_dir), "--suite", str(suite), "--yes")
    assert result.exit_code == 0
    assert list((golden_dir / "artifacts").iterdir()) == []


def test_rerecording_replaces_the_artifacts_and_says_what_changed(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path]) -> None:
    golden_dir = golden_copy(GRU)
    manifest = golden_dir / f"{GRU}.json"
    document = json.loads(manifest.read_text())
    del document["artifacts"]["onnxruntime-dynamo"]  # as if recorded before artifacts were stored
    manifest.write_text(json.dumps(document))
    result = cli("record", "--golden-dir", str(golden_dir), "--config", GRU, "--force", "--backend",
                 "onnxruntime-legacy")
    assert result.exit_code == 0, result.err
    assert "onnxruntime-dynamo artifact: no longer stored" not in result.out  # it was not in the old golden
    golden = GoldenStore(golden_dir).load(GRU)
    assert sorted(golden.artifacts) == ["onnxruntime-legacy"]
    names = sorted(path.name for path in (golden_dir / "artifacts").iterdir())
    assert names == [golden.artifacts["onnxruntime-legacy"].file]  # the others' files went with the old manifest


REPLAY_WITHOUT_TORCH = textwrap.dedent("""
    import sys

    sys.modules["torch"] = None  # `import torch` now raises ImportError
    from harness.cli import main

    code = main(sys.argv[1:])
    assert sys.modules.get("torch") is None, "torch was imported"
    print("exit", code)
""")


def test_replay_of_the_default_suites_onnx_cells_passes_where_torch_cannot_be_imported() -> None:
    result = subprocess.run([sys.executable, "-c", REPLAY_WITHOUT_TORCH, "replay", "--quiet"], cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("exit 0"), result.stdout
    assert "replaying the stored artifacts" in result.stdout
    summary = result.stdout.rstrip().splitlines()[-2]
    from harness.model.suite import load_suite

    cells = len(load_suite(None).configs) * len(EXPORTING)
    assert summary.startswith(f"OK: {cells} cells") and "unavailable" in summary, summary
    assert "torchscript-script: replaying its torchscript artifacts needs torch" in result.stdout


def test_replay_judges_the_stored_artifacts_like_a_run(cli: Callable[..., CliResult],
                                                       golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir = golden_copy(GRU, "lstm-h8-p4-s0")
    report = tmp_path / "replay.json"
    result = cli("replay", "--golden-dir", str(golden_dir), "--config", GRU, "--config", "lstm-h8-p4-s0",
                 "--json", str(report), "--quiet")
    assert result.exit_code == 0, result.out + result.err
    document = json.loads(report.read_text())
    assert document["mode"] == "replay"
    cells = {(cell["config"], cell["backend"]): cell for cell in document["cells"]}
    assert {cells[(GRU, name)]["verdict"] for name in EXPORTING} <= {"identical", "close"}
    for name in EXPORTING:
        assert cells[(GRU, name)]["past"]["status"] == "unchanged"
        assert cells[(GRU, name)]["artifact"]["cause"] == "unchanged"
        assert cells[(GRU, name)]["artifact_source"] == "stored"
    # Nothing was stored where the backend failed at record time: the replay says why, as a run would.
    assert cells[("lstm-h8-p4-s0", "onnxruntime-legacy")]["verdict"] == "unsupported"
    assert "at record time" in cells[("lstm-h8-p4-s0", "onnxruntime-legacy")]["reason"]


def _edit_one_weight(golden_dir: Path, config_id: str, backend: str, delta: float) -> None:
    """A stored ONNX artifact with one weight moved, and its manifest entry updated to match (as a
    consistent edit, or a runtime that computes otherwise, would look)."""
    import onnx
    from onnx import numpy_helper

    from harness.backends.base import Artifact
    from harness.session.artifacts import stored_entry

    store = GoldenStore(golden_dir)
    golden = store.load(config_id)
    entry = golden.artifacts[backend]
    model = onnx.load_from_string(store.artifact_bytes(golden, backend))
    initializer = max(model.graph.initializer, key=lambda tensor: int(np.prod(tensor.dims)))
    weights = numpy_helper.to_array(initializer).copy()
    weights.flat[0] += delta
    initializer.CopyFrom(numpy_helper.from_array(weights, initializer.name))
    artifact = Artifact(kind="onnx", data=model.SerializeToString(), producer=entry.producer)
    edited = stored_entry(config_id, backend, artifact)
    store.write(dataclasses.replace(golden, artifacts={**golden.artifacts, backend: edited}), force=True,
                artifacts={backend: artifact.data})


def test_a_stored_artifact_with_one_weight_moved_is_runtime_or_artifact_moved(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir = golden_copy(GRU)
    _edit_one_weight(golden_dir, GRU, "onnxruntime-legacy", 0.05)
    replayed = cli("replay", "--golden-dir", str(golden_dir), "--config", GRU, "--backend", "onnxruntime-legacy",
                   "--quiet")
    assert replayed.exit_code == 1, replayed.out
    assert f"{GRU} x onnxruntime-legacy: DRIFT" in replayed.out
    assert "artifact: runtime/artifact moved: the stored artifact by " in replayed.out
    report = tmp_path / "run.json"
    ran = cli("run", "--golden-dir", str(golden_dir), "--config", GRU, "--backend", "onnxruntime-legacy",
              "--json", str(report), "--quiet")
    assert ran.exit_code == 0, ran.out  # a fresh export still computes the golden
    assert "Stored artifacts against fresh exports" in ran.out
    assert f"{GRU} x onnxruntime-legacy: runtime/artifact moved: the stored artifact by" in ran.out
    cell = json.loads(report.read_text())["cells"][0]
    assert cell["artifact"]["cause"] == "runtime/artifact moved" and cell["artifact"]["structure_diff"] == []


PATCHED_EXPORTER = textwrap.dedent("""
    import io
    import sys

    import onnx
    import torch

    original = torch.onnx.export


    def export_with_linear_before_reset_0(*args, **kwargs):
        # The bug of PyTorch issue 189225, injected: GRU nodes written with linear_before_reset=0.
        result = original(*args, **kwargs)
        buffer = args[2]
        model = onnx.load_from_string(buffer.getvalue())
        for node in model.graph.node:
            for attribute in node.attribute:
                if node.op_type == "GRU" and attribute.name == "linear_before_reset":
                    attribute.i = 0
        buffer.seek(0)
        buffer.truncate()
        buffer.write(model.SerializeToString())
        return result


    torch.onnx.export = export_with_linear_before_reset_0
    from harness.cli import main

    sys.exit(main(sys.argv[1:]))
""")


def test_an_exporter_that_writes_another_attribute_is_exporter_changed_with_the_structural_diff(
        golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir = golden_copy(GRU)
    report = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, "-c", PATCHED_EXPORTER, "run", "--golden-dir", str(golden_dir), "--config", GRU,
         "--backend", "onnxruntime-legacy", "--no-cache", "--json", str(report), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{GRU} x onnxruntime-legacy: DRIFT" in result.stdout
    assert ("    artifact: exporter changed: the stored artifact still computes its recorded outputs under today's "
            "runtime, a fresh export does not\n      structure: GRU.linear_before_reset 1 → 0\n"
            in result.stdout)
    assert "known exporter pitfall: GRU linear_before_reset" in result.stdout
    cell = json.loads(report.read_text())["cells"][0]
    assert cell["artifact"]["cause"] == "exporter changed"
    assert cell["artifact"]["structure_diff"] == ["GRU.linear_before_reset 1 → 0"]
    assert cell["artifact_source"] == "exported"


@pytest.mark.parametrize("damage", ["missing", "symlink out", "huge size", "wrong kind"])
def test_a_damaged_artifact_entry_is_one_line_exit_2(cli: Callable[..., CliResult], golden_copy: Callable[..., Path],
                                                     tmp_path: Path, damage: str) -> None:
    golden_dir = golden_copy(GRU)
    manifest = golden_dir / f"{GRU}.json"
    document = json.loads(manifest.read_text())
    entry = document["artifacts"]["onnxruntime-legacy"]
    path = golden_dir / "artifacts" / entry["file"]
    expected = {"missing": "stored artifact of onnxruntime-legacy is missing",
                "symlink out": "leads outside", "huge size": "declares 10000000000000 bytes: refused",
                "wrong kind": "is not this golden's"}[damage]
    if damage == "missing":
        path.unlink()
    elif damage == "symlink out":
        outside = tmp_path / "outside.onnx"
        outside.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(outside)
    elif damage == "huge size":
        entry["bytes"] = 10**13
    else:
        entry["kind"] = "torchscript"
    manifest.write_text(json.dumps(document))
    result = cli("replay", "--golden-dir", str(golden_dir), "--config", GRU, "--backend", "onnxruntime-legacy",
                 "--quiet")
    assert result.exit_code == 2 and result.err == "", result.out + result.err  # its cell is CORRUPT: the report
    [line] = [line for line in result.out.splitlines() if "; record it again: harness record" in line]
    assert expected in line and f"{GRU} x onnxruntime-legacy: CORRUPT" in result.out


class _Doubling(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0] * 2


class _Tripling(_Doubling):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0] * 3


def test_two_classes_of_one_file_with_the_same_weights_are_two_cache_keys() -> None:
    """The cache key held the files of a model's classes, not the classes: a factory choosing another class
    of the same file (same weights) was served the first class's export, a false pass."""
    from harness.session.artifacts import model_code_digest

    torch.manual_seed(0)
    doubling = _Doubling()
    torch.manual_seed(0)
    tripling = _Tripling()
    assert all(torch.equal(a, b) for a, b in zip(doubling.state_dict().values(), tripling.state_dict().values(),
                                                 strict=True))
    assert model_code_digest(doubling) != model_code_digest(tripling)
    torch.manual_seed(0)
    assert model_code_digest(_Doubling()) == model_code_digest(doubling)
