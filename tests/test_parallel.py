"""harness.session.parallel: a run judged in worker processes is the run judged in one, cell for cell, in the
same order; a worker that dies costs its own config only."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.errors import HarnessError
from harness.judging.results import CellResult
from harness.model.suite import load_suite
from harness.model.tolerance import Tolerance
from harness.session import parallel
from harness.session.core import Session
from harness.session.parallel import estimated_cost, judged_in_parallel
from harness.session.settings import Settings, resolve_jobs
from harness.verdicts import Verdict
from tests.conftest import perturb_golden

# onnxruntime-dynamo is left out: about a second an export.
BACKENDS = ("eager", "torchscript-trace", "onnxruntime-legacy")
EXPENSIVE = "gru-h256-t50b8-s0"
DRIFTING = "lstm-h8-s0"  # its golden is perturbed below
CHEAP = ("rnn-h8-s0", "gru-h8-s0", "lstm-h8-h0rand-s0", "rnn-h8-f64-s0")
VICTIM = "gru-h8-s0"  # preparing it on the killer backend ends its worker process
T = TypeVar("T")


def comparable(cell: CellResult) -> CellResult:
    """Everything but timings (the localisation's too) and the order of notes, which depend on the process a cell
    ran in."""
    localisation = dataclasses.replace(cell.localisation, seconds=0.0) if cell.localisation else None
    return dataclasses.replace(cell, prepare_seconds=0.0, run_seconds=0.0, notes=tuple(sorted(cell.notes)),
                               localisation=localisation)


def within(seconds: float, call: Callable[[], T]) -> T:
    """call's result (or its exception), and a failure rather than a hung test run when it takes longer."""
    outcome: list[T] = []
    raised: list[Exception] = []

    def target() -> None:
        try:
            outcome.append(call())
        except Exception as error:
            raised.append(error)

    thread = threading.Thread(target=target, daemon=True)  # a daemon: a hung call does not hang pytest's exit
    thread.start()
    thread.join(seconds)
    if raised:
        raise raised[0]
    assert outcome, f"no result within {seconds} s"
    return outcome[0]


@pytest.fixture(autouse=True)
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers even on a one-CPU machine (the cap by CPUs is tested in tests/test_bounds.py)."""
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 4)


def test_two_workers_judge_every_cell_as_one_process_does_in_serial_order(
    golden_copy: Callable[..., Path], tmp_path: Path
) -> None:
    ids = (EXPENSIVE, *CHEAP, DRIFTING)  # the most expensive first in serial order, and first to be started
    golden_dir = golden_copy(*ids)
    perturb_golden(golden_dir, DRIFTING, "output", (0, 0, 0), 1e-3)
    # Each run its own empty export cache: a cell says whether its export came from the cache.
    settings = Settings(golden_dir=golden_dir, backends=BACKENDS, cache_dir=tmp_path / "parallel-cache")
    session = Session(dataclasses.replace(settings, cache_dir=tmp_path / "serial-cache"))
    configs = [session.config(config_id) for config_id in ids]
    seen: list[CellResult] = []

    cells = judged_in_parallel(settings, configs, BACKENDS, jobs=2, on_cell=seen.append).cells

    serial = [session.judge(config, name) for config in configs for name in BACKENDS]
    assert [(cell.config_id, cell.backend) for cell in cells] == [(i, name) for i in ids for name in BACKENDS]
    for parallel_cell, serial_cell in zip(cells, serial, strict=True):
        left, right = comparable(parallel_cell), comparable(serial_cell)
        differing = [field.name for field in dataclasses.fields(left)
                     if getattr(left, field.name) != getattr(right, field.name)]
        assert not differing, (left.config_id, left.backend, differing,
                               [(getattr(left, name), getattr(right, name)) for name in differing])
    assert {cell.verdict for cell in cells} == {Verdict.IDENTICAL, Verdict.CLOSE, Verdict.UNSUPPORTED, Verdict.DRIFT}
    assert all(cell.tensors and cell.past for cell in cells if cell.verdict is Verdict.DRIFT)
    assert sorted(map(id, seen)) == sorted(map(id, cells))  # on_cell saw each cell once, as its config finished


def test_settings_and_a_drift_cell_survive_pickling_to_and_from_a_worker(golden_copy: Callable[..., Path]) -> None:
    golden_dir = golden_copy(DRIFTING)
    perturb_golden(golden_dir, DRIFTING, "output", (0, 0, 0), 1e-3)
    settings = Settings(suite=Path("suite.toml"), golden_dir=golden_dir, configs=(DRIFTING,), backends=("eager",),
                        include_slow=True, override=Tolerance(atol=1e-6, rtol=1e-5), threads=2, shard=(1, 3),
                        live_reference=True, label="here", equal_nan=True, max_memory=2**20, allow_nonfinite=True,
                        cache=False, cache_dir=Path("cache"), jobs=2)
    cell = Session(Settings(golden_dir=golden_dir)).judge(load_suite(None).select([DRIFTING])[0], "eager")

    assert cell.verdict is Verdict.DRIFT and cell.oracle and cell.tensors[0].statistics
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert pickle.loads(pickle.dumps(cell)) == cell


def test_one_job_or_one_config_is_judged_in_this_process(
    golden_copy: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", None)  # starting a pool would fail
    settings = Settings(golden_dir=golden_copy(*CHEAP[:2]), backends=("eager",))
    configs = load_suite(None).select(list(CHEAP[:2]))

    one_job = judged_in_parallel(settings, configs, ("eager",), jobs=1).cells
    one_config = judged_in_parallel(settings, configs[:1], ("eager",), jobs=2).cells

    assert [cell.verdict for cell in one_job] == [Verdict.IDENTICAL] * 2
    assert [cell.verdict for cell in one_config] == [Verdict.IDENTICAL]


def test_a_refused_golden_in_a_worker_is_a_corrupt_cell_as_serially(golden_copy: Callable[..., Path]) -> None:
    ids = CHEAP[:2]
    golden_dir = golden_copy(*ids)
    tensors = next(golden_dir.glob(f"{ids[1]}.*.npz"))
    tensors.write_bytes(tensors.read_bytes()[:200])
    settings = Settings(golden_dir=golden_dir, backends=("eager",))
    configs = load_suite(None).select(list(ids))

    in_workers = judged_in_parallel(settings, configs, ("eager",), jobs=2).cells
    serially = judged_in_parallel(settings, configs, ("eager",), jobs=1).cells

    assert [(cell.config_id, cell.verdict, cell.reason) for cell in in_workers] == \
        [(cell.config_id, cell.verdict, cell.reason) for cell in serially]
    assert [cell.verdict for cell in in_workers] == [Verdict.IDENTICAL, Verdict.CORRUPT]
    assert re.match(f"^{re.escape(str(tensors))}: corrupt golden tensors file", in_workers[1].reason)


# A backend package on disk: eager, except that preparing VICTIM ends its process at once, as a segfault or the
# OOM killer would. (A spawned worker imports it afresh: an in-test registration would not reach it.)
KILLER_MODULE = f"""
import os

from harness.backends.eager import EagerBackend


class KillerBackend(EagerBackend):
    def __init__(self):
        super().__init__("cpu")
        self.name = "killer"

    def prepare(self, case):
        if case.config.id == "{VICTIM}":
            os._exit(1)
        return super().prepare(case)
"""


def plug_in_killer(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The killer backend through the harness.backends entry-point group, as an installed package adds one; the
    workers find it on the sys.path they inherit."""
    dist_info = directory / "harness_killer-0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-killer\nVersion: 0\n", encoding="utf-8")
    (dist_info / "entry_points.txt").write_text("[harness.backends]\nkiller = harness_killer:KillerBackend\n",
                                                encoding="utf-8")
    (directory / "harness_killer.py").write_text(KILLER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(directory)


def test_a_dead_worker_costs_only_its_config_as_error_cells(
    golden_copy: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plug_in_killer(tmp_path / "plugins", monkeypatch)
    ids = ("rnn-h8-s0", VICTIM, "lstm-h8-s0", "rnn-h8-l2-s0")
    names = ("eager", "killer")
    settings = Settings(golden_dir=golden_copy(*ids), backends=names)
    configs = load_suite(None).select(list(ids))

    judged = within(300, lambda: judged_in_parallel(settings, configs, names, jobs=2))

    cells = judged.cells
    assert [(cell.config_id, cell.backend) for cell in cells] == [(c.id, name) for c in configs for name in names]
    # The report says which configs a dead worker had in flight and which of them killed its worker again.
    assert len(judged.notes) == 1 and judged.notes[0].startswith("a -j worker process died ")
    assert judged.notes[0].endswith((f"died while judging {VICTIM}, the only config in flight: its cells are ERROR",
                                     f"{VICTIM} killed its worker again (ERROR cells)"))
    for cell in cells:
        if cell.config_id == VICTIM:
            assert cell.verdict is Verdict.ERROR
            assert cell.reason.startswith("worker process died: A process in the process pool was terminated")
        else:
            assert cell.verdict is Verdict.IDENTICAL


def test_the_longest_configs_are_started_first() -> None:
    configs = load_suite(None).configs
    by_cost = sorted(configs, key=estimated_cost, reverse=True)

    # A default run leaves the dynamo exporter's 200 unrolled steps out as slow: the 256-step GRU leads.
    assert by_cost[0].id == "gru-h8-bf-t256b2-s0"
    costs = {config.id: estimated_cost(config) for config in by_cost}
    assert costs["gru-h8-bf-t256b2-s0"] > costs["gru-h256-t50b8-s0"] > costs["gru-h8-t20b4-s0"] > costs["gru-h8-s0"]
    # With --all the dynamo exporter unrolls all 200 steps of a plain RNN: that outweighs anything gated.
    everything = {config.id: estimated_cost(config, include_slow=True) for config in configs}
    assert max(everything, key=lambda config_id: everything[config_id]) == "rnn-h8-t200b2-s0"
    assert everything["rnn-h8-t200b2-s0"] > 5 * costs["rnn-h8-t200b2-s0"]


@pytest.mark.parametrize(("value", "jobs"), [("3", 3), (3, 3), (None, 1), ("1", 1)])
def test_jobs_are_a_positive_integer(value: str | int | None, jobs: int) -> None:
    assert resolve_jobs(value) == jobs


def test_auto_jobs_are_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_jobs("auto") == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity")  # e.g. macOS
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert resolve_jobs("auto") == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert resolve_jobs("auto") == 1


@pytest.mark.parametrize("value", [0, -2, "0", "-1", "x", "", "2.5", "AUTO"])
def test_other_jobs_are_one_line_errors(value: str | int) -> None:
    with pytest.raises(HarnessError, match=r"^-j/--jobs must be a positive integer or auto, got "):
        resolve_jobs(value)


def test_the_cli_report_of_j2_equals_the_serial_one(cli: Callable[..., Any], golden_copy: Callable[..., Path],
                                                    tmp_path: Path) -> None:
    import json

    golden_dir = golden_copy(*CHEAP)
    documents = []
    for jobs in ("1", "2"):
        report = tmp_path / f"j{jobs}.json"
        result = cli("run", "-j", jobs, "--golden-dir", str(golden_dir), *(a for c in CHEAP for a in ("--config", c)),
                     "--backend", ",".join(BACKENDS), "--json", str(report), "--quiet")
        assert result.exit_code == 0, result.out + result.err
        documents.append(json.loads(report.read_text()))
    timing = {"prepare_seconds", "run_seconds", "artifact_source", "notes"}
    serial, parallel_ = ([{k: v for k, v in cell.items() if k not in timing} for cell in d["cells"]] for d in documents)
    assert serial == parallel_ and len(serial) == len(CHEAP) * len(BACKENDS)
    assert documents[0]["environment_changes"] == documents[1]["environment_changes"]
    assert documents[0]["upstream_findings"] == documents[1]["upstream_findings"]


@pytest.mark.parametrize("jobs", ["0", "-1", "many"])
def test_a_bad_job_count_is_one_line_exit_2(cli: Callable[..., Any], jobs: str) -> None:
    result = cli("run", "-j", jobs, "--config", "rnn-h8-s0")
    assert result.exit_code == 2
    assert result.err.strip() == f"harness: error: -j/--jobs must be a positive integer or auto, got {jobs!r}"
