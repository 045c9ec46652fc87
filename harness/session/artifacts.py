"""Artifacts in a run: a backend's export comes from the export cache or is made fresh (and cached),
goes into the golden when recording, and is checked against the stored one on every run, so a drift
in an exported backend says whether the exporter or the runtime moved.

Torch is imported only by exporting: checking and replaying a stored ONNX artifact needs onnxruntime alone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import weakref
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import __version__
from harness.backends.base import Artifact, ArtifactBackend, Backend
from harness.backends.bounded import MemoryBoundExceeded
from harness.backends.capture import captured_upstream_messages, first_line
from harness.judging.judge import compare_with_past
from harness.judging.results import ArtifactCheck
from harness.judging.sensitivity import disagreeing_outputs, disagreement_reason
from harness.model.hashing import arrays_sha256
from harness.model.inputs import probe_inputs
from harness.session.stored_runs import run_stored
from harness.store.artifacts import ArtifactEntry, artifact_entry
from harness.store.cache import ExportCache
from harness.store.gates import verify_artifact
from harness.store.golden import Golden, GoldenStore
from harness.verdicts import ArtifactCause, PastStatus

if TYPE_CHECKING:  # building a case imports torch
    from harness.model.case import Case

Outputs = dict[str, np.ndarray]
KEY_PACKAGES = ("torch", "onnx", "onnxscript")  # what decides an export's bytes, besides the harness itself


# Obtained.source of a cache hit: an entry an earlier run (or another process) wrote, or one this run exported
# for another cell of the same model (backends sharing an export, a control export): not "loaded" from the cache.
CACHE_EARLIER = "cache"
CACHE_THIS_RUN = "cache (exported earlier in this run)"
# The keys each cache (one per run: Session.cache) had exported into it by this process: a later hit on one is
# this run's own export. Weak: a finished run's cache and its keys go with it.
_EXPORTED_HERE: weakref.WeakKeyDictionary[ExportCache, set[str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, kw_only=True)
class Obtained:
    """An artifact ready to load, the upstream warnings its export raised, and where it came from."""

    artifact: Artifact
    notes: tuple[str, ...]
    source: str  # "cache", "exported", or "exported (cache entry discarded: <why>)"


def artifact_backend(backend: Backend) -> ArtifactBackend | None:
    return backend if isinstance(backend, ArtifactBackend) else None


def cache_key(config_hash: str, backend: ArtifactBackend, case_identity: str = "") -> str:
    """sha256 of what decides an export: the config, what its hash does not cover (case_identity: the weights,
    the examples, a user's model code), the export (backends that run the same one share it) and its
    options, the exporting packages (version and installed files) and the harness's own backend code."""
    parts = {"config": config_hash, "case": case_identity, "export": backend.export_name,
             "options": backend.export_options(), "packages": _package_identities(),
             "harness": [__version__, _backend_code_digest()]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def case_identity(case: Case) -> str:
    """What decides an export beyond the config: the module's weights and the examples it is exported at
    (sha256 each), and for a user's model the source of every class it is made of outside torch. A model
    whose weights or code changed under the same config is exported again, never served from the cache."""
    parts = [case.weights_sha256, arrays_sha256(case.examples)]
    if case.config.model:
        parts.append(model_code_digest(case.module))
    return ":".join(parts)


def model_code_digest(module: Any) -> str:
    """sha256 over the module's structure (every submodule's path and class, qualified) and the source files
    of its own classes (those not from torch), by file name. The classes count as well as their files: a
    factory that picks another class of the same file (by config or environment) was served the first
    class's export from the cache."""
    import inspect

    digest = hashlib.sha256()
    for path, part in module.named_modules():
        digest.update(f"{path}:{type(part).__module__}.{type(part).__qualname__}\n".encode())
    files = set()
    for part in module.modules():
        if not type(part).__module__.startswith("torch."):
            with contextlib.suppress(TypeError, OSError):  # a class without a source file (built in C, or REPL)
                files.add(inspect.getsourcefile(type(part)) or "")
    for name in sorted(file for file in files if file):
        with contextlib.suppress(OSError):
            digest.update(Path(name).name.encode() + Path(name).read_bytes())
    return digest.hexdigest()[:16]


def obtain(case: Case, backend: ArtifactBackend, cache: ExportCache | None) -> Obtained:
    """The backend's artifact for the case: from the cache when it holds a sound entry, else exported now
    (and cached). A corrupt entry is discarded and rebuilt, and the source says so."""
    key = cache_key(case.config.content_hash, backend, case_identity(case)) if cache else ""
    discarded = ""
    if cache:
        lookup = cache.get(key, built_in_rnn=not case.config.model)
        if lookup.entry is not None:
            source = CACHE_THIS_RUN if key in _EXPORTED_HERE.get(cache, ()) else CACHE_EARLIER
            return Obtained(artifact=lookup.entry.artifact, notes=lookup.entry.notes, source=source)
        discarded = lookup.discarded
    with captured_upstream_messages() as upstream:
        artifact = backend.export(case)
    notes = tuple(upstream)
    if cache:
        problem = cache.put(key, artifact, notes)
        notes = (*notes, problem) if problem else notes
        _EXPORTED_HERE.setdefault(cache, set()).add(key)
    source = f"exported (cache entry discarded: {discarded})" if discarded else "exported"
    return Obtained(artifact=artifact, notes=notes, source=source)


def stored_entry(config_id: str, backend: str, artifact: Artifact, *, built_in_rnn: bool = False) -> ArtifactEntry:
    """The manifest entry for an artifact about to be stored, with its structure when it is ONNX. The gate
    that checks it on every later read checks it now: a fresh export it refuses is a GoldenError at record
    time, never a stored golden that fails later. `built_in_rnn`: the config's `model` is empty."""
    facts = verify_artifact(artifact.kind, artifact.data, where=f"{config_id}: fresh {backend} export",
                            built_in_rnn=built_in_rnn)
    return artifact_entry(config_id, backend, artifact.kind, artifact.data, artifact.producer, facts.structure)


def check_artifact(store: GoldenStore, golden: Golden, backend: ArtifactBackend, inputs: dict[str, np.ndarray],
                   fresh: Artifact, fresh_outputs: Outputs) -> ArtifactCheck | None:
    """The stored artifact against a fresh export and today's runtime; None when the golden stores none."""
    entry = golden.artifacts.get(backend.name)
    if entry is None:
        return None
    same_bytes = fresh.sha256 == entry.sha256
    diff = () if same_bytes else _structure_diff(entry, fresh)
    if same_bytes:  # the fresh run is a replay of the stored artifact
        return attribute_artifact(golden, backend.name, fresh_outputs, fresh_outputs, same_bytes=True, diff=diff)
    verified = store.verified_artifact(golden, backend.name)  # its gate: GoldenError (exit 2) when refused
    stored = Artifact(kind=entry.kind, data=verified.data, producer=entry.producer)
    probe = probe_inputs(golden.config, inputs)
    names = list(fresh_outputs)
    try:
        execution, probed = run_stored(backend, stored, names, inputs, bounded=verified.facts.bounded,
                                       threads=_torch_threads(), probe=probe)
    except (TimeoutError, MemoryBoundExceeded) as error:  # a bound of its worker: the stored artifact's doing
        return ArtifactCheck(cause=ArtifactCause.REPLAY_FAILED, structure_diff=diff,
                             summary=f"the stored artifact {first_line(error)} ({verified.facts.unbounded_reason})")
    except Exception as error:  # the stored artifact no longer loads or runs: a finding, not a crash
        return ArtifactCheck(cause=ArtifactCause.REPLAY_FAILED, structure_diff=diff,
                             summary=f"the stored artifact no longer runs here: {first_line(error)}")
    # Agreeing with a fresh export on the golden's input but not on a second one: it computes the golden only.
    replayed = execution.first
    if not disagreeing_outputs(replayed, fresh_outputs):
        differing = disagreeing_outputs(probed or {}, run_artifact(backend, fresh, names, probe))
        if differing:
            return ArtifactCheck(cause=ArtifactCause.FORGED, structure_diff=diff,
                                 summary=disagreement_reason(differing))
    return attribute_artifact(golden, backend.name, fresh_outputs, replayed, same_bytes=False, diff=diff)


def _torch_threads() -> int:
    """The intra-op threads the session pinned (torch is loaded in any run that exports)."""
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 1


def run_artifact(backend: ArtifactBackend, artifact: Artifact, output_names: list[str],
                 inputs: dict[str, np.ndarray]) -> Outputs:
    with captured_upstream_messages():
        model = backend.load(artifact, output_names)
        return model.run(inputs)


def attribute_artifact(golden: Golden, backend: str, fresh: Outputs, replayed: Outputs, *, same_bytes: bool,
                       diff: tuple[str, ...]) -> ArtifactCheck:
    """Which moved since the golden was recorded: the stored artifact under today's runtime (runtime), a
    fresh export computing otherwise than the stored one does (exporter), both, or neither."""
    replay = compare_with_past(backend, golden, replayed)
    if replay.status is PastStatus.NEW:
        return ArtifactCheck(cause=ArtifactCause.UNKNOWN, same_bytes=same_bytes, structure_diff=diff,
                             summary="the golden records no fingerprint of this backend to compare the replay with")
    runtime_moved = replay.status is PastStatus.MOVED
    # The exporter moved when a fresh export computes otherwise than the stored artifact under the same
    # runtime, and otherwise than recorded (a fresh export that reproduces the recording clears it).
    fresh_sha256 = arrays_sha256(fresh)
    exporter_moved = fresh_sha256 != arrays_sha256(replayed) and fresh_sha256 != golden.backend_fingerprints[
        backend]["sha256"]
    moved = f"the stored artifact {replay.summary.removeprefix('moved ')} under today's runtime"
    if runtime_moved and exporter_moved:
        cause, summary = ArtifactCause.BOTH, f"{moved}, and a fresh export computes otherwise again"
    elif runtime_moved:
        cause, summary = ArtifactCause.RUNTIME, f"{moved}: runtime (or the artifact) changed"
    elif exporter_moved:
        own_code = " (or the model's own code changed: it is the user's)" if golden.config.model else ""
        cause, summary = ArtifactCause.EXPORTER, ("the stored artifact still computes its recorded outputs under "
                                                  f"today's runtime, a fresh export does not{own_code}")
    elif diff:
        cause, summary = ArtifactCause.EXPORT_ONLY, "a fresh export differs in structure, not in numbers"
    else:
        cause, summary = ArtifactCause.UNCHANGED, (
            "the fresh export is bitwise the stored artifact" if same_bytes else
            "the stored artifact and a fresh export compute the recorded outputs")
    return ArtifactCheck(cause=cause, summary=summary, same_bytes=same_bytes, structure_diff=diff, replay=replay)


def _structure_diff(entry: ArtifactEntry, fresh: Artifact) -> tuple[str, ...]:
    if entry.kind != "onnx" or fresh.kind != "onnx" or entry.structure is None:
        return ()
    from harness.judging.structure import OnnxStructure, onnx_structure, structure_diff

    return structure_diff(OnnxStructure.from_dict(entry.structure), onnx_structure(fresh.data))


@functools.cache
def _package_identities() -> dict[str, str]:
    """Each exporting package's version and a digest of its installed file list (RECORD), so a different
    build with the same version string is a different key."""
    identities = {}
    for name in KEY_PACKAGES:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            identities[name] = "not installed"
            continue
        record = distribution.read_text("RECORD") or ""
        identities[name] = f"{distribution.version} {hashlib.sha256(record.encode()).hexdigest()[:16]}"
    return identities


@functools.cache
def _backend_code_digest() -> str:
    """sha256 of the harness's backend modules: editing how a backend exports invalidates its entries."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[1] / "backends").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]
