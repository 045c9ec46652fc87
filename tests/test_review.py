"""`harness review` end to end, with real git and real goldens: a temporary repository holds copies of a few
goldens of golden/ (and of the example's user-model golden), committed; each test changes the working tree
or a branch the way a pull request would, and reads the review in text and Markdown."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.store.golden import GoldenStore

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "golden"
EXAMPLE = REPO / "examples" / "hello-char-model"
REFERENCE_ID = "rnn-h8-s0"
OTHER_ID = "gru-h8-s0"
USER_ID = "hello-char-model.build-lstm-h16-l2-s0"
USER_SUITE = """[suite]
name = "hello-char-model"

[defaults]
model = "hello_char_model:build"
cell = "lstm"
hidden_size = 16
num_layers = 2

[[case]]
"""


def git(repo: Path, *arguments: str) -> str:
    result = subprocess.run(["git", "-c", "user.name=review test", "-c", "user.email=review@example.invalid",
                             "-c", "commit.gpgsign=false", *arguments], cwd=repo, capture_output=True, text=True,
                            check=True)
    return result.stdout


def copy_golden(source: Path, target: Path, config_id: str) -> None:
    """A golden's manifest, tensors file and every artifact its manifest names."""
    manifest = json.loads((source / f"{config_id}.json").read_text())
    shutil.copy2(source / f"{config_id}.json", target)
    shutil.copy2(source / manifest["tensors_file"], target)
    (target / "artifacts").mkdir(exist_ok=True)
    for name in {entry["file"] for entry in manifest.get("artifacts", {}).values()}:
        shutil.copy2(source / "artifacts" / name, target / "artifacts")


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """main: golden/ with two built-in goldens and the example's user-model golden, and that model's suite."""
    repo = tmp_path_factory.mktemp("base") / "repo"
    golden = repo / "golden"
    golden.mkdir(parents=True)
    for config_id in (REFERENCE_ID, OTHER_ID):
        copy_golden(GOLDEN, golden, config_id)
    copy_golden(EXAMPLE / "golden", golden, USER_ID)
    shutil.copy2(EXAMPLE / "hello_char_model.py", repo)
    (repo / "suite.toml").write_text(USER_SUITE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "goldens")
    return repo


@pytest.fixture
def repo(base_repo: Path, tmp_path: Path) -> Path:
    """A fresh clone of the base repository for one test to change."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(base_repo), str(clone))
    return clone


def review(repo: Path, capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(["review", *arguments, "--golden-dir", str(repo / "golden")])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rerecorded_golden_shows_moved_tensors_and_the_artifacts_structure_diff(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A branch that changes the user's model and re-records its golden with --force, for real."""
    model = repo / "hello_char_model.py"
    model.write_text(model.read_text().replace("return self.head(output), h_n, c_n",
                                               "return torch.tanh(self.head(output)), h_n, c_n"))
    recorded = subprocess.run(
        [sys.executable, "-m", "harness", "record", "--force", "--suite", "suite.toml", "--golden-dir", "golden",
         "--config", USER_ID, "--backend", "eager,onnxruntime-legacy"], cwd=repo, capture_output=True, text=True)
    assert recorded.returncode == 0, recorded.stderr

    code, text, _ = review(repo, capsys, "HEAD")
    assert code == 0
    block = text.split(f"changed: {USER_ID}\n", 1)[1]
    assert "logits: 60/60 elements moved, max abs" in block  # the tanh moved every logit...
    assert "h_n:" not in block and "c_n:" not in block  # ...and nothing upstream of the head
    assert "onnxruntime-legacy: other bytes: onnx" in block
    assert "structure       onnxruntime-legacy: ops: " in block and "Tanh 0 → 1" in block  # from both sides' bytes
    assert "op set          onnxruntime-legacy: +Tanh" in block
    assert "torch-export: no longer stored" in block  # only two backends were recorded this time
    assert "RECURRENCE GONE" not in block  # the LSTM is still there
    assert f"removed  {USER_ID}." in text and f"added    {USER_ID}." in text  # the content-addressed tensors file

    code, markdown, _ = review(repo, capsys, "HEAD", "--format", "markdown")
    assert code == 0 and markdown.startswith("## Golden review\n")
    assert f"### changed: {USER_ID}" in markdown
    assert "| tensor | logits | 60/60 elements moved, max abs " in markdown
    assert "| op set | onnxruntime-legacy | +Tanh |" in markdown
    assert main(["review", "HEAD", "--golden-dir", str(repo / "golden"), "--fail-on-change"]) == 1


def constant_model(original: bytes, outputs: dict[str, np.ndarray]) -> bytes:
    """An ONNX model with the original's inputs and opsets whose outputs are the golden's tensors, as constants."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(original)
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(outputs[name], name))
             for name in (output.name for output in model.graph.output)]
    graph = helper.make_graph(nodes, "constant", list(model.graph.input), list(model.graph.output))
    return helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="planted").SerializeToString()


def swap_artifact(golden: Path, config_id: str, backend: str) -> None:
    """Replace a stored ONNX artifact (for every backend that shares it) with a constant model and re-seal the
    manifest (file name, size, sha256 and structure), as a hostile pull request would."""
    from harness.judging.structure import onnx_structure

    manifest_path = golden / f"{config_id}.json"
    manifest = json.loads(manifest_path.read_text())
    old_file = manifest["artifacts"][backend]["file"]
    data = constant_model((golden / "artifacts" / old_file).read_bytes(), GoldenStore(golden).load(config_id).tensors)
    sha256 = hashlib.sha256(data).hexdigest()
    new_file = f"{config_id}.{sha256[:12]}.onnx"
    (golden / "artifacts" / new_file).write_bytes(data)
    (golden / "artifacts" / old_file).unlink()
    for entry in manifest["artifacts"].values():
        if entry["file"] == old_file:
            entry.update(file=new_file, sha256=sha256, bytes=len(data), structure=onnx_structure(data).to_dict())
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def test_swapped_constant_model_shows_the_recurrence_gone(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(repo, "checkout", "-q", "-b", "swap")
    swap_artifact(repo / "golden", REFERENCE_ID, "onnxruntime-legacy")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "planted artifact")

    code, text, _ = review(repo, capsys, "main...")  # what the branch changed since it left main
    assert code == 0
    assert "golden/ at merge-base of HEAD and main" in text
    block = text.split(f"changed: {REFERENCE_ID}\n", 1)[1]
    for backend in ("onnxruntime-legacy", "onnx-reference-legacy"):  # the two backends that share the file
        assert f"RECURRENCE GONE {backend}: {REFERENCE_ID}." in block
        assert f"structure       {backend}: RNN node gone: 2 ops instead" in block
        assert f"structure       {backend}: producer pytorch " in block and " → planted" in block
        assert f"op set          {backend}: -Concat -Expand -Gather -RNN -Shape -Squeeze -Unsqueeze" in block
    assert "tensor " not in block  # the constants are the golden's own tensors: nothing else moved

    code, markdown, _ = review(repo, capsys, "main...", "--format", "markdown")
    assert f"### changed: {REFERENCE_ID} (recurrence gone)" in markdown
    assert "| **RECURRENCE GONE** | onnxruntime-legacy | " in markdown
    assert "| structure | onnxruntime-legacy | RNN node gone: 2 ops instead |" in markdown


def test_removed_golden_and_stray_file_are_listed(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    golden = repo / "golden"
    for path in GoldenStore(golden).files_of(OTHER_ID):
        path.unlink()
    (golden / "notes.txt").write_text("not a golden\n")
    (golden / "artifacts" / "odd\x1b[31m\nname.onnx").write_bytes(b"\x00")

    code, text, _ = review(repo, capsys)  # default base: HEAD (no upstream), so the uncommitted changes
    assert code == 0
    assert f"\nremoved: {OTHER_ID}\n" in text
    assert "  tensor          output: gone (was (3, 5, 8) float32)" in text
    assert f"  removed  {OTHER_ID}.json\n" in text
    assert "  added    notes.txt  (named by no manifest)\n" in text
    assert "odd\\x1b[31m\\nname.onnx  (named by no manifest)" in text and "\x1b" not in text  # escaped, one line

    markdown = review(repo, capsys, "--format", "markdown")[1]
    assert f"### removed: {OTHER_ID}" in markdown
    assert "| added | notes.txt | named by no manifest |" in markdown
    assert "odd\\\\x1b\\[31m\\\\nname.onnx" in markdown  # control characters and Markdown syntax both escaped

    copy = repo.parent / "copy"  # a second directory as the base: the same findings, no git needed
    shutil.copytree(repo / "golden", copy)
    (copy / "notes.txt").unlink()
    code, text, _ = review(repo, capsys, str(copy))
    assert code == 0 and "goldens: none changed, 2 unchanged; files: 1 added" in text


def test_a_side_that_does_not_load_is_one_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = repo / "golden" / f"{REFERENCE_ID}.json"
    manifest.write_text(manifest.read_text()[:200])
    code, text, _ = review(repo, capsys, "HEAD")
    assert code == 0
    block = text.split(f"changed: {REFERENCE_ID}\n", 1)[1]
    assert block.startswith(f"  does not load   head: {repo / 'golden' / REFERENCE_ID}.json: corrupt golden manifest")
    assert "\n" not in block.split("\n\n")[0]  # one line: its tensors and artifacts are unknown, not "gone"
    assert "changed  rnn-h8-s0.json" in text


def test_unchanged_and_output_file(repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, text, _ = review(repo, capsys)
    assert code == 0 and "no golden changed (3 goldens compared), no file added or removed" in text
    target = tmp_path / "review.md"
    assert main(["review", "--golden-dir", str(repo / "golden"), "--format", "markdown", "--output", str(target),
                 "--fail-on-change"]) == 0
    assert target.read_text().startswith("## Golden review\n")


@pytest.mark.parametrize(("arguments", "message"), [
    (["no-such-ref"], "'no-such-ref' names no commit in "),
    (["--", "--upload-pack=x"], "'--upload-pack=x' names no commit in "),
    (["main...", "--golden-dir", "{outside}"], "is not inside a git working tree"),
    (["--golden-dir", "{missing}"], "does not exist (--golden-dir)"),
])
def test_user_errors_are_one_line_and_exit_2(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             arguments: list[str], message: str) -> None:
    outside, missing = tmp_path / "outside", tmp_path / "missing"
    outside.mkdir()
    values = [value.format(outside=outside, missing=missing) for value in arguments]
    code = main(["review", "--golden-dir", str(repo / "golden"), *values])  # a later --golden-dir wins
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and error.startswith("harness: error: ") and message in error
