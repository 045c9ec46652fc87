"""Test doubles: backends that misbehave on purpose, each in one known way."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from harness.backends import register_backend, unregister_backend
from harness.backends.base import Availability
from harness.backends.eager import EagerBackend, TorchModel
from harness.backends.wrappers import flat_module_for
from harness.judging.oracle import Variant, oracle_outputs
from harness.model.case import Case
from harness.model.config import RnnConfig

Outputs = dict[str, np.ndarray]


@dataclass
class EditedModel:
    inner: object
    edit: Callable[[Outputs], Outputs]

    def run(self, inputs: Outputs) -> Outputs:
        return self.edit(self.inner.run(inputs))  # type: ignore[attr-defined]


class DoubleBackend:
    """What every test double shares: eager CPU, available, no known limitation, never slow."""

    device = "cpu"
    uses_torch_kernels = True

    def __init__(self, name: str) -> None:
        self.name, self.description = name, f"test double {name}"

    def availability(self) -> Availability:
        return Availability(available=True)

    def known_limitation(self, config: RnnConfig) -> str | None:
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        return False


class EditingBackend(DoubleBackend):
    """Eager CPU with its outputs edited by a function: a kernel that changed in a known way."""

    def __init__(self, name: str, edit: Callable[[Case, Outputs], Outputs]) -> None:
        super().__init__(name)
        self.edit = edit

    def prepare(self, case: Case) -> EditedModel:
        return EditedModel(EagerBackend().prepare(case), lambda outputs: self.edit(case, outputs))


def add_offset(case: Case, outputs: Outputs) -> Outputs:
    return {name: array + array.dtype.type(1e-3) for name, array in outputs.items()}


def add_noise(case: Case, outputs: Outputs) -> Outputs:
    noise = np.random.default_rng()  # unseeded on purpose: a nondeterministic kernel
    return {name: array + noise.standard_normal(array.shape).astype(array.dtype) * 1e-6
            for name, array in outputs.items()}


def break_final_state(case: Case, outputs: Outputs) -> Outputs:
    return {**outputs, "h_n": outputs["h_n"] * outputs["h_n"].dtype.type(0.5)}


def batch_first_output(case: Case, outputs: Outputs) -> Outputs:
    """An exporter that ignores batch_first=False: output comes back (batch, seq, features)."""
    return {**outputs, "output": np.ascontiguousarray(outputs["output"].transpose(1, 0, 2))}


def oracle_variant(variant: Variant) -> Callable[[Case, Outputs], Outputs]:
    """A kernel that computes the given departure from PyTorch's equations."""

    def edit(case: Case, outputs: Outputs) -> Outputs:
        weights = {name: tensor.detach().numpy() for name, tensor in case.module.state_dict().items()}
        computed = oracle_outputs(case.config, weights, case.inputs, variant)
        return {name: computed[name].astype(outputs[name].dtype) for name in outputs}

    return edit


DOUBLES = {"test-offset": add_offset, "test-batch-first": batch_first_output,
            "test-noisy": add_noise, "test-broken-state": break_final_state,
           "test-gru-lbr0": oracle_variant(Variant(gru_linear_before_reset=False)),
           "test-lstm-iofc": oracle_variant(Variant(lstm_gate_blocks=(0, 2, 3, 1)))}


class GradHookBackend(DoubleBackend):
    """Eager CPU with a hook on one weight's gradient: a backward kernel that changed (the forward pass is
    untouched). The hook adds `offset`, or unseeded noise of that size when `noisy`."""

    def __init__(self, name: str, *, offset: float, noisy: bool = False, parameter: str = "rnn.weight_hh_l0") -> None:
        super().__init__(name)
        self.offset, self.noisy, self.parameter = offset, noisy, parameter

    def prepare(self, case: Case) -> TorchModel:
        module = copy.deepcopy(flat_module_for(case))  # the case's own module stays unhooked
        rng = np.random.default_rng()  # unseeded on purpose, for the noisy variant

        def hook(gradient: torch.Tensor) -> torch.Tensor:
            if self.noisy:
                noise = rng.standard_normal(tuple(gradient.shape)) * self.offset
                return gradient + torch.from_numpy(noise).to(gradient)
            return gradient + self.offset

        dict(module.named_parameters())[self.parameter].register_hook(hook)
        return TorchModel(module, "cpu", tuple(case.forward_names))


GRAD_DOUBLES = {"test-grad-hook": dict(offset=1e-4), "test-grad-noise": dict(offset=1e-6, noisy=True)}


@contextmanager
def registered_doubles() -> Iterator[None]:
    for name, edit in DOUBLES.items():
        register_backend(name, lambda name=name, edit=edit: EditingBackend(name, edit))  # type: ignore[misc]
    for name, options in GRAD_DOUBLES.items():
        register_backend(name, lambda name=name, options=options: GradHookBackend(name, **options))  # type: ignore[misc]
    try:
        yield
    finally:
        for name in [*DOUBLES, *GRAD_DOUBLES]:
            unregister_backend(name)
