"""`harness atlas` (reports.atlas, reports.atlas_views) over real replay reports of the committed goldens under
this machine's onnxruntime. An older release is simulated by a copy of such a report whose release and one
cell's outcome are rewritten as a replay under that release writes them; building the atlas is the real code."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.reports.atlas import Mark, build_atlas, config_group
from harness.reports.atlas_views import atlas_html, atlas_markdown
from tests.conftest import COMMITTED_GOLDEN, REPO, CliResult

MOVING = ("rnn-h8-f64-s0", "onnxruntime-dynamo")  # moved 33 ulps under onnxruntime 1.19 and 1.20 (docs/atlas.md)
BREAKING = ("rnn-h8-s0", "onnxruntime-legacy")
TOPK = "[ShapeInferenceError] K input must be a one-dimensional tensor of size 1"
Report = dict[str, Any]


@pytest.fixture(scope="module")
def newest(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A real replay report of two configs' ONNX Runtime cells under this machine's onnxruntime."""
    report = tmp_path_factory.mktemp("atlas") / "now.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["replay", "--backend", "onnxruntime-legacy,onnxruntime-dynamo", "--config", MOVING[0],
                     "--config", BREAKING[0], "--golden-dir", str(COMMITTED_GOLDEN), "--label", "ort-now",
                     "--json", str(report), "--quiet"])
    assert code == 0, out.getvalue()
    document: Report = json.loads(report.read_text(encoding="utf-8"))
    return document


def as_release(document: Report, release: str, *, label: str | None = None) -> Report:
    """The report as a replay under `release` writes it: its label, its fingerprint, and the change line
    from the goldens' recording release."""
    older = copy.deepcopy(document)
    recorded = document["environment"]["packages"]["onnxruntime"]
    older["label"] = label or f"ort-{release}"
    older["environment"]["packages"]["onnxruntime"] = release
    older["environment_changes"] = {config: [f"onnxruntime {recorded} -> {release}"] for config in older["configs"]}
    return older


def cell_of(document: Report, key: tuple[str, str]) -> Report:
    cell: Report = next(c for c in document["cells"] if (c["config"], c["backend"]) == key)
    return cell


def moved(document: Report, ulps: int) -> Report:
    cell = cell_of(document, MOVING)
    cell["past"] = {"status": "moved", "summary": f"moved by {ulps} ulps", "max_ulps": ulps, "max_abs": 2.2e-16}
    cell["outputs_sha256"] = "0" * 64
    return document


def broken(document: Report, reason: str = f"the stored artifact does not load: {TOPK}") -> Report:
    cell = cell_of(document, BREAKING)
    cell.update(verdict="ERROR", failing=True, reason=reason, past=None, max_ulps=0, tensors=[])
    return document


@pytest.fixture
def write(tmp_path: Path) -> Callable[[Report], Path]:
    def save(document: Report) -> Path:
        path = tmp_path / f"{document['label']}.json".replace("/", "_").replace("<", "_").replace(">", "_")
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    return save


def test_each_changed_cell_names_its_first_release_and_where_it_is_back(
        newest: Report, write: Callable[[Report], Path]) -> None:
    recorded = newest["environment"]["packages"]["onnxruntime"]
    paths = [write(newest), write(broken(as_release(newest, "1.24.1"))), write(moved(as_release(newest, "1.19.0"), 33)),
             write(moved(as_release(newest, "1.20.1"), 33))]
    atlas = build_atlas(paths)  # given out of order: the columns follow the onnxruntime version
    assert [release.label for release in atlas.releases] == ["ort-1.19.0", "ort-1.20.1", "ort-1.24.1", "ort-now"]
    assert atlas.recorded_under == (recorded,)
    rows = {(row.config, row.backend): row for row in atlas.rows}
    assert (rows[MOVING].first_changed, rows[MOVING].back_in) == ("ort-1.19.0", "ort-1.24.1")
    assert [(span.first, span.last, span.entry.mark) for span in rows[MOVING].spans] == [
        ("ort-1.19.0", "ort-1.20.1", Mark.MOVED), ("ort-1.24.1", "ort-now", Mark.AS_RECORDED)]
    assert rows[MOVING].entries["ort-1.20.1"].short() == "~33"
    assert (rows[BREAKING].first_changed, rows[BREAKING].back_in) == ("ort-1.24.1", "ort-now")
    error = rows[BREAKING].entries["ort-1.24.1"]
    assert error.mark is Mark.ERROR and TOPK in error.reason
    computed = [row for row in atlas.rows if row.entries["ort-now"].mark.computed]
    assert len(computed) >= 3 and all(row.entries["ort-now"].mark is Mark.AS_RECORDED for row in computed)
    unchanged = [row for row in atlas.rows if (row.config, row.backend) not in (MOVING, BREAKING)]
    assert unchanged and not any(row.changed for row in unchanged)  # unsupported everywhere is no change
    assert atlas.exit_code == 0  # the newest release passes: older releases are findings


def test_the_views_say_the_same(newest: Report, write: Callable[[Report], Path], cli: Callable[..., CliResult],
                                tmp_path: Path) -> None:
    paths = [write(moved(as_release(newest, "1.19.0"), 33)), write(newest)]
    result = cli("atlas", *map(str, paths), "--markdown", str(tmp_path / "a.md"), "--html", str(tmp_path / "a.html"),
                 "--not-replayed", "1.18.0: no wheel for this Python")
    assert result.exit_code == 0, result.err
    assert f"{MOVING[0]} x {MOVING[1]}: first changed in ort-1.19.0, as recorded again from ort-now" in result.out
    assert "ort-now: bitwise as recorded on all" in result.out and "not replayed: 1.18.0: no wheel" in result.out
    markdown = (tmp_path / "a.md").read_text(encoding="utf-8")
    assert f"| `{MOVING[0]}` x `{MOVING[1]}` | ort-1.19.0 | ort-now |" in markdown
    page = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert 'title="ort-1.19.0: moved by 33 ulps, passing">~33</td>' in page
    assert f'<tr class="group"><th colspan="4">{config_group(MOVING[0])}</th></tr>' in page


def test_exit_one_when_the_newest_release_fails_a_cell(newest: Report, write: Callable[[Report], Path],
                                                       cli: Callable[..., CliResult]) -> None:
    result = cli("atlas", str(write(newest)), str(write(broken(as_release(newest, "99.0.0")))))
    assert result.exit_code == 1
    assert result.out.rstrip().splitlines()[-1].startswith("FAILED: 1 of ")
    assert "1 failing in the newest (ort-99.0.0)" in result.out


@pytest.mark.parametrize(("damage", "message"), [
    (lambda path: path.write_text('{"schema": "harness.report/1", ', encoding="utf-8"), "corrupt"),
    (lambda path: path.write_text(json.dumps({"schema": "harness.report/1"}), encoding="utf-8"), "corrupt"),
    (lambda path: path.unlink(), "no such"),
])
def test_a_malformed_report_is_one_line(newest: Report, write: Callable[[Report], Path], cli: Callable[..., CliResult],
                                        damage: Callable[[Path], object], message: str) -> None:
    bad = write(as_release(newest, "1.21.0"))
    damage(bad)
    result = cli("atlas", str(write(newest)), str(bad))
    assert result.exit_code == 2 and result.out == ""
    assert result.err.startswith(f"harness: error: {bad}: ") and message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_two_reports_of_one_label_are_refused(newest: Report, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(newest), encoding="utf-8")
    second.write_text(json.dumps(as_release(newest, "1.22.0", label="ort-now")), encoding="utf-8")
    result = cli("atlas", str(first), str(second))
    assert result.exit_code == 2 and "release label 'ort-now' is already taken" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_report_text_is_escaped(newest: Report, write: Callable[[Report], Path]) -> None:
    hostile = "<script>alert(1)</script>\x1b]8;;x\x07 | `"
    older = broken(as_release(newest, "1.24.1", label=f"ort-{hostile}"), reason=f'<img src=x onerror="{hostile}">')
    atlas = build_atlas([write(newest), write(older)], not_replayed=[f"1.0.0: {hostile}"])
    page = atlas_html(atlas)
    assert "<script>alert" not in page and "<img" not in page and "\x1b" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&quot;" in page
    markdown = atlas_markdown(atlas)
    assert "\x1b" not in markdown and "\x07" not in markdown
    assert "\\x07 \\| " in markdown  # control characters escaped; a `|` cannot end a table cell


def test_the_atlas_tool_swaps_only_the_onnxruntime_pin(tmp_path: Path) -> None:
    """tools/atlas.py (nox -s atlas, tox -e atlas): the release's venv gets constraints.txt less its onnxruntime
    and torch pins, so the release is the one thing that differs."""
    spec = importlib.util.spec_from_file_location("atlas_tool", REPO / "tools" / "atlas.py")
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = tool.atlas_constraints(tmp_path).read_text(encoding="utf-8")
    assert "onnxruntime==" not in text and "torch==" not in text and "numpy==" in text
    assert f"-c {REPO / 'constraints'}/base.txt" in text
    assert tool.oldest_supported() == "1.19"
    assert sorted(["1.32.0", "1.9.0", "1.24.10", "1.24.4"], key=tool.release_key) == [
        "1.9.0", "1.24.4", "1.24.10", "1.32.0"]
