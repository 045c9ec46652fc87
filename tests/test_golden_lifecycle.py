"""The golden life cycle from the CLI: stale goldens listed by run and removed by prune, show from the
manifest alone (suite and fixture goldens), and a case's own tolerance from the suite."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from harness.session.fixture import FixtureGoldens, produced_from_model
from harness.store.golden import GoldenStore
from tests.conftest import REFERENCE_ID, CliResult, perturb_golden, write_suite

Cli = Callable[..., CliResult]


def add_stale_golden(golden: Path) -> str:
    """A golden of a config no suite holds (hidden 5), written through the store."""
    store = GoldenStore(golden)
    recorded = store.load(REFERENCE_ID)
    stale = dataclasses.replace(recorded, config=dataclasses.replace(recorded.config, hidden_size=5), artifacts={})
    store.write(stale)
    return stale.config.id


def test_run_lists_stale_goldens_and_prune_removes_only_them(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    stale_id = add_stale_golden(golden)
    (golden / "notes.txt").write_text("mine", encoding="utf-8")
    run = cli("run", "--config", REFERENCE_ID, "--backend", "eager", "--golden-dir", str(golden))
    assert run.exit_code == 0  # stale goldens are listed, not failing
    assert f"Stale goldens (1 golden in {golden} used by no config of the suite; not failing):" in run.out
    assert f"  {stale_id}" in run.out and f"harness prune --golden-dir {golden} --yes" in run.out
    stale_files = sorted(path.name for path in golden.glob(f"{stale_id}.*"))
    assert len(stale_files) == 2  # manifest and tensors file
    dry = cli("prune", "--golden-dir", str(golden))
    assert dry.exit_code == 0
    listed = sorted(line.split("/")[-1] for line in dry.out.splitlines() if line.startswith("would remove"))
    assert listed == stale_files
    assert sorted(path.name for path in golden.glob(f"{stale_id}.*")) == stale_files  # a dry run deletes nothing
    removed = cli("prune", "--golden-dir", str(golden), "--yes")
    assert removed.exit_code == 0 and removed.out.count(f"removed {golden}") == 2
    assert f"removed 2 files of stale goldens from {golden}" in removed.out
    assert not list(golden.glob(f"{stale_id}.*"))
    assert (golden / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert GoldenStore(golden).load(REFERENCE_ID).config.id == REFERENCE_ID  # the used golden is untouched
    assert "no stale goldens" in cli("prune", "--golden-dir", str(golden)).out


def test_show_reads_any_golden_from_its_manifest_alone(cli: Cli, golden_copy: Callable[..., Path],
                                                       tmp_path: Path) -> None:
    golden = golden_copy(REFERENCE_ID)
    by_id = cli("show", REFERENCE_ID, "--golden-dir", str(golden))
    by_path = cli("show", str(golden / f"{REFERENCE_ID}.json"))
    assert by_id.exit_code == by_path.exit_code == 0 and by_id.out.splitlines()[1:] == by_path.out.splitlines()[1:]
    assert "output: shape (3, 5, 8) = (seq, batch, directions*hidden)" in by_id.out
    torch.manual_seed(3)
    FixtureGoldens(update=True, force=False, threads=1).check(
        tmp_path / "rnn_golden", "my-lstm", produced_from_model(torch.nn.LSTM(4, 6).eval(), torch.ones(3, 2, 4), 1),
        test_id="t")
    fixture = cli("show", "my-lstm", "--golden-dir", str(tmp_path / "rnn_golden"))
    assert fixture.exit_code == 0, fixture.err
    assert fixture.out.startswith("my-lstm  (rnn_golden fixture golden;")
    assert "c_n: shape (1, 2, 6), float32" in fixture.out
    document = json.loads(cli("show", str(tmp_path / "rnn_golden" / "my-lstm.json"), "--json").out)
    assert document["kind"] == "fixture" and document["tensors"]["output"]["shape"] == [3, 2, 6]


def test_a_case_carries_its_own_tolerance(cli: Cli, golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy(REFERENCE_ID, "gru-h8-s0")
    perturb_golden(golden, REFERENCE_ID, "output", (0, 1, 2), 1e-3)
    perturb_golden(golden, "gru-h8-s0", "output", (0, 1, 2), 1e-3)
    suite = write_suite(tmp_path / "suite.toml", 'cell = "gru"')
    text = suite.read_text(encoding="utf-8").replace('cell = "rnn_tanh"', 'cell = "rnn_tanh"\natol = 2e-3\nrtol = 0.0')
    suite.write_text(text, encoding="utf-8")
    result = cli("run", "--suite", str(suite), "--golden-dir", str(golden), "--backend", "eager")
    assert result.exit_code == 1
    assert "gru-h8-s0 x eager: DRIFT (tolerance atol=2e-06 rtol=1e-05)" in result.out  # the default policy
    assert f"{REFERENCE_ID} x eager" not in result.out  # its own, looser tolerance lets it pass
    assert "(tolerance atol=0.002 rtol=0)" in cli("list", "--suite", str(suite)).out
    override = cli("run", "--suite", str(suite), "--golden-dir", str(golden), "--backend", "eager", "--bitwise")
    assert f"{REFERENCE_ID} x eager: DRIFT (tolerance bitwise)" in override.out  # the command line wins


def test_a_case_tolerance_is_validated_where_it_is_defined(cli: Cli, tmp_path: Path) -> None:
    for body, message in (("atol = 1e-3", "case 2: tolerance: atol and rtol go together"),
                          ("atol = -1.0\nrtol = 0.0", "case 2: tolerance: atol must be finite and >= 0, got -1.0"),
                          ("atol = nan\nrtol = 0.0", "case 2: tolerance: atol must be finite and >= 0, got nan"),
                          ('atol = "x"\nrtol = 0.0', "case 2: tolerance: atol must be a number")):
        suite = write_suite(tmp_path / "suite.toml", f'cell = "gru"\n{body}')
        result = cli("list", "--suite", str(suite))
        assert result.exit_code == 2 and message in result.err, (body, result.err)
        assert "Traceback" not in result.err
