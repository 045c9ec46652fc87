"""The backend registry: built-in backends plus any registered under the ``harness.backends``
entry-point group (each entry point is a callable returning one Backend).

Backends are imported only when asked for, so ``harness list`` never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, NoReturn

from harness.backends.base import Availability, Backend
from harness.errors import BackendUnavailableError, UnknownNameError
from harness.model.environment import importable

if TYPE_CHECKING:
    from harness.model.case import Case
    from harness.model.config import RnnConfig

ENTRY_POINT_GROUP = "harness.backends"


class WithoutTorch:
    """Stands in for eager where torch cannot be imported (a torch-free install), whose module imports torch
    at its top: `harness list --backends` then says why it cannot run instead of failing to import it."""

    uses_torch_kernels = True

    def __init__(self, device: str) -> None:
        self.device = device
        self.name = "eager" if device == "cpu" else f"eager-{device}"
        self.description = f"eager torch.nn module on {device}"

    def availability(self) -> Availability:
        return Availability(available=False, reason="package torch is not installed")

    def known_limitation(self, config: RnnConfig) -> str | None:
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        return False

    def prepare(self, case: Case) -> NoReturn:
        raise RuntimeError(f"{self.name} needs torch, which cannot be imported here")


def _eager(device: str) -> Callable[[], Backend]:
    def build() -> Backend:
        if not importable("torch"):
            return WithoutTorch(device)
        from harness.backends.eager import EagerBackend

        return EagerBackend(device)

    return build


def _torchscript(mode: str) -> Callable[[], Backend]:
    def build() -> Backend:
        from harness.backends.torchscript import TorchScriptBackend

        return TorchScriptBackend(mode)  # type: ignore[arg-type]

    return build


def _onnxruntime(exporter: str, device: str) -> Callable[[], Backend]:
    def build() -> Backend:
        from harness.backends.onnx_runtime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(exporter, device)  # type: ignore[arg-type]

    return build


def _torch_export() -> Backend:
    from harness.backends.torch_export import TorchExportBackend

    return TorchExportBackend()


def _torch_compile() -> Backend:
    from harness.backends.torch_compile import TorchCompileBackend

    return TorchCompileBackend()


def _onnx_reference(exporter: str) -> Callable[[], Backend]:
    def build() -> Backend:
        from harness.backends.onnx_reference import OnnxReferenceBackend

        return OnnxReferenceBackend(exporter)  # type: ignore[arg-type]

    return build


BUILTIN_BACKENDS: dict[str, Callable[[], Backend]] = {
    "eager": _eager("cpu"),
    "torchscript-script": _torchscript("script"),
    "torchscript-trace": _torchscript("trace"),
    "onnxruntime-legacy": _onnxruntime("legacy", "cpu"),
    "onnxruntime-dynamo": _onnxruntime("dynamo", "cpu"),
    "torch-export": _torch_export,
    "torch-compile": _torch_compile,
    "onnx-reference-legacy": _onnx_reference("legacy"),
    "onnx-reference-dynamo": _onnx_reference("dynamo"),
    "eager-cuda": _eager("cuda"),
    "onnxruntime-legacy-cuda": _onnxruntime("legacy", "cuda"),
    "onnxruntime-dynamo-cuda": _onnxruntime("dynamo", "cuda"),
}
# Families a user can name instead of backends (CPU variants; name the -cuda ones explicitly).
FAMILIES = {
    "torch": ("eager", "torchscript-script", "torchscript-trace", "torch-export", "torch-compile"),
    "onnx": ("onnxruntime-legacy", "onnxruntime-dynamo", "onnx-reference-legacy", "onnx-reference-dynamo"),
}
# Backends that run the very same export on two runtimes: one drifting alone names its runtime.
SAME_EXPORT_RUNTIMES = (("onnxruntime-legacy", "onnx-reference-legacy"),
                        ("onnxruntime-dynamo", "onnx-reference-dynamo"))
REFERENCE_BACKEND = "eager"
DEFAULT_BACKENDS = ("eager", "torchscript-script", "torchscript-trace", "torch-export", "torch-compile",
                    "onnxruntime-legacy", "onnxruntime-dynamo", "onnx-reference-legacy", "onnx-reference-dynamo")
CUDA_BACKENDS = ("eager-cuda", "onnxruntime-legacy-cuda", "onnxruntime-dynamo-cuda")  # default where CUDA is present


def default_backend_names() -> tuple[str, ...]:
    """What runs when no backend is named: every CPU backend, plus the CUDA ones where CUDA is present
    (where torch cannot be imported, a torch-free install, CUDA is not looked for)."""
    if not importable("torch"):
        return DEFAULT_BACKENDS
    import torch

    return DEFAULT_BACKENDS + (CUDA_BACKENDS if torch.cuda.is_available() else ())


def resolve_backends(names: Sequence[str], *, required: bool) -> tuple[list[Backend], dict[str, str]]:
    """The named backends (families expanded), and the reason for each one that cannot run here.

    required: the user named them, so one that cannot run is a BackendUnavailableError (exit 2).
    """
    backends = [get_backend(name) for name in expand_backend_names(names)]
    statuses = {backend.name: backend.availability() for backend in backends}
    unavailable = {name: status.reason for name, status in statuses.items() if not status.available}
    if required and unavailable:
        name, reason = next(iter(unavailable.items()))
        raise BackendUnavailableError(f"backend {name} is unavailable here: {reason}")
    return backends, unavailable


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Add a backend in-process (tests, notebooks); packages use the entry-point group instead."""
    BUILTIN_BACKENDS[name] = factory


def unregister_backend(name: str) -> None:
    BUILTIN_BACKENDS.pop(name, None)


def backend_names() -> list[str]:
    """Every known backend name: built-ins first, then entry points, in a stable order."""
    plugged = sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
    return list(BUILTIN_BACKENDS) + [name for name in plugged if name not in BUILTIN_BACKENDS]


def expand_backend_names(names: Sequence[str]) -> list[str]:
    """Exact names stay; a family means its CPU members: ``torch`` (eager, TorchScript, torch.export,
    torch.compile), ``onnx`` (every ONNX backend), or a prefix (``onnxruntime``, ``torchscript``)."""
    known = backend_names()
    expanded: list[str] = []
    for name in names:
        family = ([k for k in FAMILIES[name] if k in known] if name in FAMILIES and name not in known
                  else [k for k in known if k.startswith(f"{name}-") and not k.endswith("-cuda")])
        for resolved in [name] if name in known or not family else family:
            if resolved not in expanded:
                expanded.append(resolved)
    return expanded


def get_backend(name: str) -> Backend:
    if name in BUILTIN_BACKENDS:
        return BUILTIN_BACKENDS[name]()
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        backend: Backend = entry_point.load()()
        return backend
    raise UnknownNameError(f"unknown backend {name!r}; known: {', '.join(backend_names())}")
