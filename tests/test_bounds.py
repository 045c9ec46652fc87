"""Bounds on what a run may take: the memory estimate covers the export shapes and the training run; -j is capped
by the CPUs and the memory estimates, and says so; workers die with their parent; a dead worker is reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.model.budget import WORKER_BYTES, estimate, jobs_cap
from harness.model.config import RnnConfig
from harness.session import parallel
from tests.conftest import REPO, write_suite
from tests.test_parallel import VICTIM, plug_in_killer

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for a process's children")
MiB = 1024**2


def test_the_estimate_covers_the_export_shape() -> None:
    plain = RnnConfig(input="random")
    exported = RnnConfig(input="random", export_seq_len=10**9)

    assert estimate(exported).total > 1000 * 1024**3 > estimate(plain).total
    assert estimate(RnnConfig(input="random", export_batch=10**6)).total > 1000 * estimate(plain).total


def test_the_estimate_covers_gradients_and_the_training_run() -> None:
    forward = RnnConfig(cell="lstm", hidden_size=512)
    gradients = RnnConfig(cell="lstm", hidden_size=512, check="grad")
    training = RnnConfig(cell="lstm", hidden_size=512, check="train", train_steps=100_000)

    assert forward.id != gradients.id and estimate(forward).training == 0
    # gradients and the saved weights: at least two more copies of the weights
    assert estimate(gradients).training >= 2 * estimate(gradients).weights
    assert estimate(training).training > estimate(gradients).training  # plus a loss per step
    assert estimate(training).total > estimate(forward).total


def test_a_huge_export_shape_is_refused_at_suite_load_in_one_line(cli: Any, tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite.toml", 'input = "random"\nexport_seq_len = 1000000000')

    for command in (["list"], ["run", "--golden-dir", str(tmp_path / "g")]):
        result = cli(*command, "--suite", str(suite), "--max-memory", "64K")

        assert result.exit_code == 2 and result.out == ""
        assert result.err.count("\n") == 1 and "Traceback" not in result.err
        assert "case 2: config rnn-h8-t3b5-xt1000000000b5-s0 needs an estimated" in result.err
        assert "activations" in result.err and "above --max-memory 64.0 KiB" in result.err


def test_jobs_are_capped_by_the_cpus() -> None:
    capped = jobs_cap(1000, [MiB] * 12, cpus=2, available=None, budget=4 * 1024**3)

    assert (capped.jobs, capped.reason) == (2, "-j 1000 capped to 2: 2 CPUs")
    assert jobs_cap(2, [MiB] * 12, cpus=8, available=None, budget=4 * 1024**3).reason == ""


def test_jobs_are_capped_by_the_largest_configs_memory() -> None:
    needs = [300 * MiB, 200 * MiB, 100 * MiB, MiB]
    within_budget = jobs_cap(8, needs, cpus=8, available=None, budget=512 * MiB)
    within_machine = jobs_cap(8, needs, cpus=8, available=3 * WORKER_BYTES + 400 * MiB, budget=4 * 1024**3)

    assert within_budget.jobs == 2
    assert within_budget.reason == ("-j 8 capped to 2: the 3 largest configs need an estimated 600.0 MiB together, "
                                    "above --max-memory 512.0 MiB")
    assert within_machine.jobs == 2 and "3 workers with their configs need an estimated" in within_machine.reason
    assert jobs_cap(3, needs, cpus=8, available=None, budget=4 * 1024**3).jobs == 3


class CountingPool(ProcessPoolExecutor):
    """The pool session.parallel starts, noting how many workers it was allowed."""

    sizes: ClassVar[list[int]] = []

    def __init__(self, max_workers: int, **kwargs: Any) -> None:
        CountingPool.sizes.append(max_workers)
        super().__init__(max_workers, **kwargs)


def test_j_1000_starts_no_more_workers_than_cpus_and_a_dead_worker_is_reported(
    cli: Any, golden_copy: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plug_in_killer(tmp_path / "plugins", monkeypatch)
    ids = ("rnn-h8-s0", "lstm-h8-s0", VICTIM)
    suite = write_suite(tmp_path / "suite.toml", 'cell = "lstm"', 'cell = "gru"')
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 2)
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", CountingPool)
    CountingPool.sizes = []
    report = tmp_path / "report.json"

    result = cli("run", "--suite", str(suite), "--golden-dir", str(golden_copy(*ids)), "--backend", "eager,killer",
                 "-j", "1000", "--json", str(report))

    assert max(CountingPool.sizes) == 2  # then 1: the configs in flight with the dead worker, one at a time
    assert result.exit_code == 1
    assert "Warning: -j 1000 capped to 2: 2 CPUs" in result.out
    death = next(line for line in result.out.splitlines() if "worker process died" in line and "Warning" in line)
    # with the victim alone in flight, or with others that were judged again one at a time (it depends on timing)
    assert death.endswith((f"died while judging {VICTIM}, the only config in flight: its cells are ERROR",
                           f"{VICTIM} killed its worker again (ERROR cells)"))
    warnings = json.loads(report.read_text(encoding="utf-8"))["warnings"]
    assert "-j 1000 capped to 2: 2 CPUs" in warnings and death.removeprefix("Warning: ") in warnings


def children_of(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@linux_only
def test_j_workers_die_with_a_killed_run(golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    ids = ("rnn-h8-s0", "lstm-h8-s0", "gru-h8-s0", "rnn-h8-l2-s0")
    suite = write_suite(tmp_path / "suite.toml", 'cell = "lstm"', 'cell = "gru"', "num_layers = 2")
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--suite", str(suite), "--golden-dir",
                            str(golden_copy(*ids)), "--backend", "eager", "--no-cache", "-j", "2"], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert wait_until(lambda: len(children_of(run.pid)) >= 3, 60)  # the resource tracker and two workers
        workers = children_of(run.pid)
        time.sleep(1)  # the workers are past their start
        run.send_signal(signal.SIGKILL)
        run.wait()

        assert wait_until(lambda: not any(alive(pid) for pid in workers), 5)
    finally:
        run.kill()
        for pid in children_of(run.pid):
            os.kill(pid, signal.SIGKILL)


# A parent that starts a worker (its command line in JSON, with its own pid for "{parent}") and waits: the test
# SIGKILLs it.
PARENT = """
import json, os, subprocess, sys, time
command = [os.getpid() if part == "{parent}" else part for part in json.loads(sys.argv[1])]
child = subprocess.Popen([str(part) for part in command])
print(child.pid, flush=True)
time.sleep(600)
"""
# A worker that asks to die with its parent, by the kernel or (use_fallback) by its watching thread.
WORKER = """
import os, time
from harness.backends import lifetime
if {use_fallback}:
    lifetime._kernel_kills_us = lambda: False
lifetime.die_with_parent(os.getppid())
print("ready", flush=True)
time.sleep(600)
"""


@linux_only
@pytest.mark.parametrize("use_fallback", [False, True], ids=["prctl", "watching-thread"])
def test_a_worker_dies_with_its_parent(use_fallback: bool) -> None:
    worker = [sys.executable, "-c", textwrap.dedent(WORKER.format(use_fallback=use_fallback))]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, json.dumps(worker)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"
        parent.send_signal(signal.SIGKILL)
        parent.wait()

        assert wait_until(lambda: not alive(child), 5)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if alive(child):
            os.kill(child, signal.SIGKILL)


@linux_only
def test_the_probe_worker_dies_with_a_parent_killed_while_it_starts() -> None:
    """Killed before the worker could ask: it finds its parent gone as it starts, and ends without computing
    (it would print one JSON line per cell to the pipe it shares with its parent)."""
    command = [sys.executable, "-m", "harness.session.probe_worker", "--backend", "eager", "--config", "rnn-h8-s0",
               "--parent", "{parent}"]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, json.dumps(command)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

        assert wait_until(lambda: not alive(child), 60)  # its imports first, then it sees the parent gone
        assert parent.stdout.read() == ""  # no cell was computed
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if alive(child):
            os.kill(child, signal.SIGKILL)
