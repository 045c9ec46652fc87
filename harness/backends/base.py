"""The backend protocol: tensors in, named tensors out, with a reason whenever it cannot run."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from harness.model.config import RnnConfig
from harness.verdicts import NO_AUTOGRAD

if TYPE_CHECKING:  # the protocol must not import torch: `harness list` and `--help` stay fast
    from harness.model.case import Case


@dataclass(frozen=True, kw_only=True)
class Availability:
    """Whether a backend can run on this machine at all, and why not."""

    available: bool
    reason: str = ""


class PreparedModel(Protocol):
    """A case made ready by one backend (exported, compiled, loaded)."""

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named outputs for named inputs; the names are those of Case.output_names."""


class Backend(Protocol):
    """One way of computing a case. Implementations live one per module under harness.backends."""

    name: str
    device: str
    description: str
    uses_torch_kernels: bool  # torch's global settings (threads, deterministic mode) apply to it

    def availability(self) -> Availability:
        """Cheap check whether this backend can run here (packages, devices)."""

    def known_limitation(self, config: RnnConfig) -> str | None:
        """Why this backend is known not to handle config (tried anyway; a failure is 'unsupported')."""

    def is_slow(self, config: RnnConfig) -> bool:
        """True when this cell is too slow for a default run (it then runs only under --all)."""

    def prepare(self, case: Case) -> PreparedModel:
        """Export / compile / load the case's module; raises on failure."""


def loading_availability(backend: Backend) -> Availability:
    """Whether a stored artifact of the backend can be loaded and run here (replay): what loading needs, never
    what exporting needs (a dynamo ONNX file runs without onnxscript). A backend may say so with a method of
    that name (the built-in ones do); else its availability stands."""
    check = getattr(backend, "loading_availability", None)
    return check() if callable(check) else backend.availability()


def torch_availability(feature: str) -> Availability:
    """torch is installed and has torch.<feature> (jit, export, compile); torch is imported only to check."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return Availability(available=False, reason="package torch is not installed")
    import torch

    if not hasattr(torch, feature):
        return Availability(available=False, reason=f"this torch has no torch.{feature}")
    return Availability(available=True)


class NoAutogradError(RuntimeError):
    """The backend computes forward only: it cannot take gradients or train (the cell is unsupported)."""


def autograd_problem(backend: Backend, check: str) -> str | None:
    """Why backend cannot run a "grad" or "train" check, when it declares ``autograd = False``."""
    if check == "forward" or getattr(backend, "autograd", True):
        return None
    return f"{backend.name} {NO_AUTOGRAD}: it computes the forward pass only, so it cannot {check_verb(check)}"


def check_verb(check: str) -> str:
    return "take gradients" if check == "grad" else "train"


ARTIFACT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "torch-export": ".pt2"}


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """A backend's prepared model as bytes: what `record` stores beside the golden, the export cache
    keeps, and `replay` loads again under today's runtime."""

    kind: str  # a key of ARTIFACT_SUFFIXES
    data: bytes = field(repr=False)
    producer: dict[str, Any]  # how it was made: exporter, its options, the package versions

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def suffix(self) -> str:
        return ARTIFACT_SUFFIXES[self.kind]


@runtime_checkable
class ArtifactBackend(Backend, Protocol):
    """A backend whose preparation yields a storable artifact: prepare(case) is load(export(case))."""

    artifact_kind: str
    loader_packages: tuple[str, ...]  # what loading (not exporting) needs: replay runs where only these exist
    export_name: str  # backends that export the same artifact share it (cache key): e.g. "onnx-legacy"

    def export_options(self) -> dict[str, Any]:
        """The exporter's options that change the artifact (part of the export cache's key)."""

    def export(self, case: Case) -> Artifact:
        """The case's module exported, scripted or traced, as bytes."""

    def load(self, artifact: Artifact, output_names: Sequence[str]) -> PreparedModel:
        """A runnable model from an artifact of this backend's kind (from a fresh export or the store)."""


class ProbedBackend(Backend, Protocol):
    """A backend with settings of its own that must not change bits (probed by `harness probe`)."""

    def probe_pairs(self, case: Case) -> dict[str, tuple[PreparedModel, PreparedModel]]:
        """Probe name -> (model with the pinned settings, model with the other setting)."""
