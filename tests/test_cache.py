"""The export cache: a second run loads every export from it, says so, and reports the same findings; a
corrupt entry is discarded and rebuilt, and the report names it; --no-cache neither reads nor writes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.backends import get_backend
from harness.backends.base import Artifact
from harness.model.config import RnnConfig
from harness.session.artifacts import cache_key
from harness.store.cache import CACHE_ENV, ExportCache, default_cache_dir
from tests.conftest import COMMITTED_GOLDEN, CliResult

CONFIGS = ("rnn-h8-s0", "gru-h8-s0")
BACKENDS = "torchscript-trace,onnxruntime-legacy"


def cache_said(out: str, cache: Path, counts: str) -> bool:
    """The cache line, with its directory, or (wider than the terminal) without it (-v shows it)."""
    lines = out.splitlines()
    return f"export cache {cache}: {counts}" in lines or f"export cache: {counts}" in lines


def _stored(suffix: str) -> bytes:
    """A real artifact (entries must pass the artifact gate): the reference golden's first of this kind."""
    return sorted((COMMITTED_GOLDEN / "artifacts").glob(f"rnn-h8-s0.*{suffix}"))[0].read_bytes()


def _run(cli: Callable[..., CliResult], golden_dir: Path, report: Path, *extra: str) -> dict:
    result = cli("run", "--golden-dir", str(golden_dir), *(arg for c in CONFIGS for arg in ("--config", c)),
                 "--backend", BACKENDS, "--json", str(report), "--quiet", *extra)
    assert result.exit_code == 0, result.out + result.err
    return {"out": result.out, "report": json.loads(report.read_text())}


def _sources(document: dict) -> list[str]:
    return [cell["artifact_source"] for cell in document["report"]["cells"]]


def test_a_warm_run_loads_every_export_from_the_cache_with_the_same_findings(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir, cache = golden_copy(*CONFIGS), tmp_path / "cache"
    cold = _run(cli, golden_dir, tmp_path / "cold.json", "--cache-dir", str(cache))
    warm = _run(cli, golden_dir, tmp_path / "warm.json", "--cache-dir", str(cache))
    assert _sources(cold) == ["exported"] * 4 and _sources(warm) == ["cache"] * 4
    assert cache_said(cold["out"], cache, "0 cells loaded from earlier runs, 4 exported now")
    assert cache_said(warm["out"], cache, "4 cells loaded from earlier runs, 0 exported now")
    assert warm["report"]["cache_dir"] == str(cache)
    assert warm["report"]["upstream_findings"] == cold["report"]["upstream_findings"] != []
    for before, after in zip(cold["report"]["cells"], warm["report"]["cells"], strict=True):
        assert (after["verdict"], after["outputs_sha256"]) == (before["verdict"], before["outputs_sha256"])
    assert len(list(cache.glob("*/*.json"))) == 4


def test_an_export_shared_within_one_run_is_not_said_to_be_loaded_from_the_cache(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    """onnx-reference-legacy runs the export onnxruntime-legacy made a moment before: a hit, but not an earlier
    run's; in a second run (the same process, as the pytest plugin's) both were made earlier."""
    golden_dir, cache = golden_copy(CONFIGS[0]), tmp_path / "cache"
    run = ("run", "--golden-dir", str(golden_dir), "--config", CONFIGS[0], "--backend",
           "onnxruntime-legacy,onnx-reference-legacy", "--cache-dir", str(cache))
    cold = cli(*run, "--json", str(tmp_path / "cold.json"))
    assert cold.exit_code == 0, cold.out + cold.err
    assert cache_said(cold.out, cache, "0 cells loaded from earlier runs, 1 exported now, 1 sharing an export made in "
                                       "this run")
    assert _sources({"report": json.loads((tmp_path / "cold.json").read_text())}) == [
        "exported", "cache (exported earlier in this run)"]
    warm = cli(*run)
    assert cache_said(warm.out, cache, "2 cells loaded from earlier runs, 0 exported now")


def test_a_corrupt_entry_is_discarded_rebuilt_and_reported(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir, cache = golden_copy(*CONFIGS), tmp_path / "cache"
    _run(cli, golden_dir, tmp_path / "cold.json", "--cache-dir", str(cache))
    [entry] = [path for path in cache.glob("*/*.onnx")
               if json.loads(path.with_suffix(".json").read_text())["producer"]["opset_version"] == 17][:1]
    entry.write_bytes(entry.read_bytes()[:-3] + b"xyz")
    rebuilt = _run(cli, golden_dir, tmp_path / "rebuilt.json", "--cache-dir", str(cache))
    sources = _sources(rebuilt)
    assert sources.count("cache") == 3
    [cell] = [cell for cell in rebuilt["report"]["cells"] if cell["artifact_source"] != "cache"]
    discarded = cell["artifact_source"]
    assert discarded == f"exported (cache entry discarded: {entry}: does not match its sha256 (corrupt))"
    assert cell["backend"] == "onnxruntime-legacy"
    assert f"  rebuilt {cell['config']} x onnxruntime-legacy: {discarded}" in rebuilt["out"]
    assert {cell["verdict"] for cell in rebuilt["report"]["cells"]} <= {"identical", "close"}
    again = _run(cli, golden_dir, tmp_path / "again.json", "--cache-dir", str(cache))
    assert _sources(again) == ["cache"] * 4  # the rebuilt entry is sound


def test_no_cache_neither_reads_nor_writes_it(cli: Callable[..., CliResult], golden_copy: Callable[..., Path],
                                             tmp_path: Path) -> None:
    golden_dir, cache = golden_copy(*CONFIGS), tmp_path / "cache"
    document = _run(cli, golden_dir, tmp_path / "off.json", "--cache-dir", str(cache), "--no-cache")
    assert _sources(document) == ["exported"] * 4
    assert "export cache off (--no-cache): 0 cells loaded from earlier runs, 4 exported now" in document["out"]
    assert document["report"]["cache_dir"] == "" and not cache.exists()


@pytest.mark.parametrize("garbage", [b"", b"{", b'{"schema": "harness.export-cache/1", "kind": "onnx"}',
                                     b'{"schema": "other", "kind": "onnx", "bytes": 1, "sha256": "x", "producer": {}}'])
def test_an_unreadable_entry_is_a_miss_and_is_removed(tmp_path: Path, garbage: bytes) -> None:
    cache = ExportCache(tmp_path)
    key = "ab" + "0" * 62
    assert cache.put(key, Artifact(kind="onnx", data=_stored(".onnx"), producer={"x": 1}), ("a note",)) == ""
    assert cache.get(key).entry is not None
    (tmp_path / "ab" / f"{key}.json").write_bytes(garbage)
    lookup = cache.get(key)
    assert lookup.entry is None and lookup.discarded
    assert list((tmp_path / "ab").iterdir()) == []


def test_an_entry_round_trips_its_artifact_and_notes(tmp_path: Path) -> None:
    cache = ExportCache(tmp_path)
    artifact = Artifact(kind="torchscript", data=_stored(".pt"), producer={"exporter": "torch.jit.trace"})
    cache.put("cd" + "1" * 62, artifact, ("DeprecationWarning: x",))
    entry = cache.get("cd" + "1" * 62).entry
    assert entry is not None and entry.artifact == artifact and entry.notes == ("DeprecationWarning: x",)
    assert cache.clear() == 1 and not tmp_path.exists()


def test_the_key_tells_configs_backends_and_exporter_options_apart() -> None:
    legacy, dynamo = get_backend("onnxruntime-legacy"), get_backend("onnxruntime-dynamo")
    reference, gru = RnnConfig(), RnnConfig(cell="gru")
    keys = {cache_key(reference.content_hash, legacy), cache_key(reference.content_hash, dynamo),  # type: ignore[arg-type]
            cache_key(gru.content_hash, legacy)}  # type: ignore[arg-type]
    assert len(keys) == 3
    assert cache_key(reference.content_hash, legacy) == cache_key(reference.content_hash, legacy)  # type: ignore[arg-type]


def test_the_cache_lives_in_the_user_cache_directory_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir() == Path(platformdirs.user_cache_dir("harness", appauthor=False)) / "exports"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path


def test_a_cache_directory_that_cannot_be_written_turns_the_cache_off_with_a_warning(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir, blocker = golden_copy(*CONFIGS), tmp_path / "a-file"
    blocker.write_text("not a directory")
    document = _run(cli, golden_dir, tmp_path / "r.json", "--cache-dir", str(blocker))
    assert _sources(document) == ["exported"] * 4 and document["report"]["cache_dir"] == ""
    assert f"Warning: export cache off for this run: cannot create {blocker}: File exists" in document["out"]
    assert ("export cache off (see the warning above): 0 cells loaded from earlier runs, 4 exported now"
            in document["out"])
    assert blocker.read_text() == "not a directory"
