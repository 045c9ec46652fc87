"""Determinism probes: is each config x backend bitwise reproducible under the settings that may
change bits? Every probe restores what it changes; the fresh-process probe runs in parallel with
the in-process ones."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from harness.backends.base import Backend, NoAutogradError, PreparedModel, autograd_problem
from harness.backends.capture import captured_upstream_messages, first_line, full_message
from harness.errors import HarnessError
from harness.judging.compare import compare_outputs
from harness.judging.limitations import RecordedFailure, recorded_failure, same_failure
from harness.judging.results import PROBES, SETTING_PROBES, ProbeResult
from harness.model.case import Case, build_module, weights_sha256
from harness.model.config import RnnConfig
from harness.model.hashing import arrays_sha256
from harness.model.tolerance import BITWISE
from harness.session.execution import for_the_check, pinned_threads
from harness.session.settings import ProbeSettings
from harness.verdicts import ProbeVerdict

if TYPE_CHECKING:
    from harness.session.core import Session

MODEL_ROW = "(model)"  # the seed probe is about building the model, not about a backend
Outputs = dict[str, np.ndarray]


def run_probes(session: Session, options: ProbeSettings) -> tuple[ProbeResult, ...]:
    """Every probe for every config x backend of the session; the fresh processes work while this one probes."""
    configs = session.configs
    session.require_models()
    backends = session.runnable_backends()
    workers = _start_workers(session, [b.name for b in backends]) if options.fresh_process else []
    results: list[ProbeResult] = []
    in_process_sha: dict[tuple[str, str], str] = {}
    with session.pinned():
        for config in configs:
            results.append(_seed_probe(config))
            case = session.prepared(config).case
            for backend in backends:
                if backend.is_slow(config) and not session.settings.include_slow:
                    continue
                recorded = _recorded_failure(session, config, backend.name)
                cell_results, sha = _probe_cell(case, backend, options, session.settings.threads, recorded)
                cell_results = [dataclasses.replace(r, strict=options.strict_settings) for r in cell_results]
                in_process_sha[(config.id, backend.name)] = sha
                results += cell_results
    if workers:
        results += _fresh_process_results(workers, in_process_sha)
    else:
        results += [_maker(config_id, backend)("fresh-process", ProbeVerdict.SKIPPED, "--no-fresh-process")
                    for (config_id, backend), sha in in_process_sha.items() if sha]
    return tuple(results)


def _recorded_failure(session: Session, config: RnnConfig, backend: str) -> RecordedFailure | None:
    """The golden's record that this backend cannot take the user's model, if a readable golden holds one (the
    probes need no golden: an unreadable one is `run`'s to report)."""
    if not config.model:
        return None
    try:
        golden = session.golden(config)
    except HarnessError:
        return None
    return recorded_failure(config, golden, backend) if golden is not None else None


def _probe_cell(case: Case, backend: Backend, options: ProbeSettings, threads: int,
                recorded: RecordedFailure | None = None) -> tuple[list[ProbeResult], str]:
    make = _maker(case.config.id, backend.name)
    try:
        with captured_upstream_messages():
            problem = autograd_problem(backend, case.config.check)
            if problem:
                raise NoAutogradError(problem)
            model = for_the_check(backend.prepare(case), case)  # forward, gradients or training, as a run
            reference = model.run(case.inputs)
            if getattr(model, "runs_check", False):  # torch.compile: compiled and run twice in a worker of its own
                probes = [make("repeat", *_same_bits(reference, [model.run(case.inputs)], "the worker's two runs"))]
                probes += [make(probe, ProbeVerdict.NOT_APPLICABLE, "it runs in a worker process of its own, which "
                                "this process's settings do not reach") for probe in ("torch-threads", "deterministic")]
            else:
                repeats = [model.run(case.inputs) for _ in range(options.repeats)]
                probes = [make("repeat", *_same_bits(reference, repeats, f"{options.repeats} runs in one process"))]
                probes += _torch_probes(make, backend, model, case, reference, threads)
            probes += _backend_probes(make, backend, case)
    except Exception as error:  # a backend that fails to run has nothing to probe
        limitation = str(error) if isinstance(error, NoAutogradError) else backend.known_limitation(case.config)
        if not limitation and recorded is not None and same_failure(recorded.reason, first_line(error)):
            limitation = f"recorded: {recorded.reason}"  # as the golden recorded it for this model: not a failure
        verdict, reason = ((ProbeVerdict.UNSUPPORTED, limitation) if limitation
                           else (ProbeVerdict.ERROR, first_line(error)))
        detail = "" if isinstance(error, NoAutogradError) else full_message(error)  # TorchScript's source line
        return [dataclasses.replace(make(probe, verdict, reason), reason_detail=detail)
                for probe in PROBES if probe != "seed"], ""
    return probes, arrays_sha256(reference)


def _torch_probes(make: Callable[..., ProbeResult], backend: Backend, model: PreparedModel, case: Case,
                  reference: Outputs, threads: int) -> list[ProbeResult]:
    if not backend.uses_torch_kernels:
        return [make(probe, ProbeVerdict.NOT_APPLICABLE, "torch settings do not reach this backend")
                for probe in ("torch-threads", "deterministic")]
    cores = os.cpu_count() or 1
    other = cores if cores != threads else 1
    with pinned_threads(other):
        threaded = model.run(case.inputs)
    with _deterministic_algorithms():
        deterministic = model.run(case.inputs)
    return [make("torch-threads", *_same_bits(reference, [threaded], f"torch threads {threads} vs {other}")),
            make("deterministic", *_same_bits(reference, [deterministic],
                                               "torch.use_deterministic_algorithms(True) vs default"))]


def _backend_probes(make: Callable[..., ProbeResult], backend: Backend, case: Case) -> list[ProbeResult]:
    pairs_of = getattr(backend, "probe_pairs", None)
    pairs = pairs_of(case) if pairs_of else {}
    results = []
    for probe in ("ort-threads", "ort-optimization"):
        if probe not in pairs:
            results.append(make(probe, ProbeVerdict.NOT_APPLICABLE, "not an ONNX Runtime backend"))
            continue
        pinned, other = pairs[probe]
        results.append(make(probe, *_same_bits(pinned.run(case.inputs), [other.run(case.inputs)], _PAIR_TEXT[probe])))
    return results


_PAIR_TEXT = {"ort-threads": f"ORT intra_op_num_threads 1 vs {os.cpu_count() or 1}",
              "ort-optimization": "ORT graph optimisation ORT_ENABLE_ALL vs ORT_DISABLE_ALL"}


def _seed_probe(config: RnnConfig) -> ProbeResult:
    """The same seed gives the same weights; another seed gives other weights."""
    make = _maker(config.id, MODEL_ROW)
    with captured_upstream_messages():
        first, again = weights_sha256(build_module(config)), weights_sha256(build_module(config))
        other = weights_sha256(build_module(dataclasses.replace(config, seed=config.seed + 1)))
    if first != again:
        return make("seed", ProbeVerdict.FAIL, f"seed {config.seed} built twice gave different weights")
    if first == other:
        return make("seed", ProbeVerdict.FAIL,
                    f"seeds {config.seed} and {config.seed + 1} gave the same weights: the seed is ignored")
    return make("seed", ProbeVerdict.PASS, f"seed {config.seed} twice: same weights; seed {config.seed + 1}: different")


def _same_bits(reference: Outputs, others: list[Outputs], what: str) -> tuple[ProbeVerdict, str, float]:
    worst = 0.0
    for other in others:
        comparisons = compare_outputs(reference, other, BITWISE)
        worst = max([worst, *(c.max_abs for c in comparisons)])
        if any(not c.passed for c in comparisons):
            return ProbeVerdict.FAIL, f"{what}: differ by up to {worst:.1e}", worst
    return ProbeVerdict.PASS, f"{what}: bitwise equal", 0.0


def _maker(config_id: str, backend: str) -> Callable[..., ProbeResult]:
    def make(probe: str, verdict: ProbeVerdict, detail: str = "", max_abs: float = 0.0) -> ProbeResult:
        if verdict is ProbeVerdict.FAIL and probe in SETTING_PROBES:
            verdict = ProbeVerdict.DIFFERS
        return ProbeResult(config_id=config_id, backend=backend, probe=probe, verdict=verdict, detail=detail,
                           max_abs=max_abs)

    return make


@contextlib.contextmanager
def _deterministic_algorithms() -> Iterator[None]:
    """torch.use_deterministic_algorithms(True) (and CUBLAS_WORKSPACE_CONFIG) for the block only."""
    import torch

    saved = torch.are_deterministic_algorithms_enabled()
    saved_workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    saved_cudnn = torch.backends.cudnn.deterministic
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved)
        torch.backends.cudnn.deterministic = saved_cudnn
        if saved_workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved_workspace


# The fresh-process probe: two new interpreters compute every selected cell and print sha256 lines.

def _start_workers(session: Session, backends: list[str]) -> list[subprocess.Popen[str]]:
    settings = session.settings
    command = [sys.executable, "-m", "harness.session.probe_worker", "--threads", str(settings.threads),
               "--parent", str(os.getpid())]
    command += ["--suite", str(settings.suite)] if settings.suite else []
    command += [flag for config in session.configs for flag in ("--config", config.id)]
    command += [flag for backend in backends for flag in ("--backend", backend)]
    command += ["--all"] if settings.include_slow else []
    return [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for _ in range(2)]


def _fresh_process_results(workers: list[subprocess.Popen[str]],
                           in_process: dict[tuple[str, str], str]) -> list[ProbeResult]:
    runs = [_worker_shas(worker) for worker in workers]
    results = []
    for (config_id, backend), here in in_process.items():
        make = _maker(config_id, backend)
        shas = [run.get((config_id, backend), "") for run in runs]
        if not here:
            continue  # the backend did not run here either; its other probes say why
        if any(sha.startswith("error") or not sha for sha in shas):
            reason = next((sha for sha in shas if sha.startswith("error")),
                          "not computed in a fresh process")
            results.append(make("fresh-process", ProbeVerdict.NOT_APPLICABLE, reason))
        elif len({here, *shas}) == 1:
            results.append(make("fresh-process", ProbeVerdict.PASS, "two new interpreters and this one: same sha256"))
        else:
            results.append(make("fresh-process", ProbeVerdict.FAIL, f"sha256 differ: this process {here[:12]}, "
                                                         f"new ones {shas[0][:12]} and {shas[1][:12]}"))
    return results


def _worker_shas(worker: subprocess.Popen[str]) -> dict[tuple[str, str], str]:
    stdout, _ = worker.communicate()
    shas = {}
    for line in stdout.splitlines():
        with contextlib.suppress(json.JSONDecodeError, KeyError):
            record = json.loads(line)
            shas[(record["config"], record["backend"])] = record["sha256"]
    return shas
