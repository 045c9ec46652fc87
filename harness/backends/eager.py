"""Eager PyTorch: the reference backend (CPU), and the same module on CUDA when present."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.backends.base import Availability
from harness.backends.wrappers import flat_module_for
from harness.model.case import Case
from harness.model.config import RnnConfig


@dataclass(frozen=True)
class TorchModel:
    """A torch module (eager, TorchScript, torch.export's) on one device: its forward without autograd, or,
    given the case's config, the config's check (harness.backends.workloads: forward, grad or train).

    warm_up: call it once before the calls that count. TorchScript's profiling executor runs the first call
    unoptimised and optimises from the second on, so calls 1 and 2 can differ in bits (a float64 cell loop's
    gradients did, by 2.8e-17) though every later call agrees: a server's steady state is what is judged.
    Where the first call did differ, a FirstCallDiffers warning says by how much (a finding, not a failure)."""

    module: torch.nn.Module
    device: str
    output_names: tuple[str, ...]
    config: RnnConfig | None = None
    warm_up: bool = False
    _calls: list[dict[str, np.ndarray]] = field(default_factory=list, init=False, compare=False, repr=False)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.warm_up and not self._calls:
            self._calls.append(self._computed(inputs))
            outputs = self._computed(inputs)
            _say_if_first_call_differs(self._calls[0], outputs)
            return outputs
        return self._computed(inputs)

    def _computed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from harness.backends.workloads import forward_outputs, run_check

        with _no_tf32():
            if self.config is not None:
                return run_check(self.config, self.module, inputs, self.output_names, self.device)
            return forward_outputs(self.module, inputs, self.output_names, self.device)


class FirstCallDiffers(UserWarning):
    """A TorchScript module's first (unoptimised) call computed other bits than the calls after it."""


def _say_if_first_call_differs(first: dict[str, np.ndarray], later: dict[str, np.ndarray]) -> None:
    moved = [name for name in later if first[name].tobytes() != later[name].tobytes()]
    if moved:
        largest = max(float(np.max(np.abs(first[name].astype(np.float64) - later[name].astype(np.float64))))
                      for name in moved)
        warnings.warn(f"TorchScript's first call (run unoptimised by the profiling executor) differs from the "
                      f"calls after it by up to {largest:.2g} in {', '.join(moved[:3])}"
                      f"{' ...' if len(moved) > 3 else ''}: the harness judges the calls after one warm-up call",
                      FirstCallDiffers, stacklevel=2)


class _no_tf32:
    """TF32 matmuls on Ampere+ trade bits for speed; a reproducibility check must not use them."""

    def __enter__(self) -> None:
        self._saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._saved


def cuda_availability() -> Availability:
    if not torch.cuda.is_available():
        return Availability(available=False, reason="no CUDA device (torch.cuda.is_available() is False)")
    return Availability(available=True)


class EagerBackend:
    """The module exactly as built, called eagerly: the golden reference on CPU."""

    uses_torch_kernels = True

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.name = "eager" if device == "cpu" else f"eager-{device}"
        self.description = f"eager torch.nn module on {device}"

    def availability(self) -> Availability:
        return cuda_availability() if self.device == "cuda" else Availability(available=True)

    def known_limitation(self, config: RnnConfig) -> str | None:
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        return False

    def prepare(self, case: Case) -> TorchModel:
        module = flat_module_for(case)
        if self.device != "cpu":
            module = copy.deepcopy(module).to(self.device)
        return TorchModel(module, self.device, tuple(case.forward_names))
