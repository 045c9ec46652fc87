"""What a config's check computes from a torch module a backend prepared: its forward outputs; the gradient
of a fixed, seeded scalar loss with respect to every floating input and trainable parameter ("grad"); or K
seeded SGD steps on the hello next-character task, with the loss at every step and the final weights
("train"). Every autograd backend (eager, TorchScript, torch.export's module, torch.compile) runs the same
code here, so they differ only in the module they hand in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from harness.backends.wrappers import WRAPPED_MODULE
from harness.errors import ConfigError
from harness.model.config import VOCABULARY_SIZE, RnnConfig
from harness.model.inputs import train_batch
from harness.model.tensors import to_numpy, to_torch

_LOSS_STREAM = 4  # NumPy streams keyed on [seed, stream], beside the inputs' (see harness.model.inputs)
_READOUT_STREAM = 5

Outputs = dict[str, np.ndarray]


def run_check(config: RnnConfig, module: torch.nn.Module, inputs: dict[str, np.ndarray],
              forward_names: Sequence[str], device: str = "cpu") -> Outputs:
    """The config's check on module: named outputs (see the module docstring)."""
    if config.check == "forward":
        return forward_outputs(module, inputs, forward_names, device)
    tensors = [to_torch(array).to(device) for array in inputs.values()]
    if config.check == "grad":
        return _gradients(config, module, list(inputs), tensors)
    return _training(config, module, tensors)


def forward_outputs(module: torch.nn.Module, inputs: dict[str, np.ndarray], names: Sequence[str],
                    device: str = "cpu") -> Outputs:
    """The module's forward pass without autograd, its tensor (or flat tuple of tensors) named in order."""
    tensors = [to_torch(array).to(device) for array in inputs.values()]
    with torch.no_grad():
        outputs = as_tuple(module(*tensors))
    return {name: to_numpy(tensor) for name, tensor in zip(names, outputs, strict=True)}


def loss_weights(config: RnnConfig, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """The fixed seeded N(0, 1) weights of the grad check's loss: sum over outputs of (output * weight)."""
    rng = np.random.default_rng([config.seed, _LOSS_STREAM])
    return [rng.standard_normal(shape) for shape in shapes]


def _gradients(config: RnnConfig, module: torch.nn.Module, names: list[str], tensors: list[torch.Tensor]) -> Outputs:
    differentiable = [(name, tensor.detach().clone().requires_grad_(True))
                      for name, tensor in zip(names, tensors, strict=True) if tensor.is_floating_point()]
    given = dict(differentiable)
    arguments = [given.get(name, tensor) for name, tensor in zip(names, tensors, strict=True)]
    parameters = _trainable(config, module)
    with torch.enable_grad():
        outputs = as_tuple(module(*arguments))
        weights = loss_weights(config, [tuple(output.shape) for output in outputs])
        loss = sum(((output * torch.from_numpy(weight).to(output)).sum() for output, weight
                    in zip(outputs, weights, strict=True)), torch.zeros((), dtype=outputs[0].dtype))
        wanted = [tensor for _, tensor in differentiable] + [parameter for _, parameter in parameters]
        gradients = torch.autograd.grad(loss, wanted, allow_unused=True)
    result = {"loss": to_numpy(loss)}
    labels = [name for name, _ in differentiable] + [name for name, _ in parameters]
    for label, tensor, gradient in zip(labels, wanted, gradients, strict=True):
        result[f"grad.{label}"] = to_numpy(gradient if gradient is not None else torch.zeros_like(tensor))
    return result


def _training(config: RnnConfig, module: torch.nn.Module, tensors: list[torch.Tensor]) -> Outputs:
    """K steps of plain SGD from the module's weights, which are restored afterwards (a second run starts
    from the same weights). A bare RNN's outputs go through a fixed seeded readout to the 4 letters; a
    user's model's first output must already be logits over h/e/l/o."""
    targets = torch.from_numpy(train_batch()[1])
    if config.batch_first:
        targets = targets.T.contiguous()
    parameters = _trainable(config, module)
    saved = [parameter.detach().clone() for _, parameter in parameters]
    losses = []
    try:
        for _ in range(config.train_steps):
            with torch.enable_grad():
                logits = _logits(config, as_tuple(module(*tensors))[0])
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCABULARY_SIZE), targets.reshape(-1))
                gradients = torch.autograd.grad(loss, [parameter for _, parameter in parameters], allow_unused=True)
            with torch.no_grad():
                for (_, parameter), gradient in zip(parameters, gradients, strict=True):
                    if gradient is not None:
                        parameter.sub_(config.learning_rate * gradient)
            losses.append(loss.detach().clone())
        result = {"loss": to_numpy(torch.stack(losses))}
        result.update({f"weight.{name}": to_numpy(parameter.detach().clone()) for name, parameter in parameters})
        return result
    finally:
        with torch.no_grad():
            for (_, parameter), value in zip(parameters, saved, strict=True):
                parameter.copy_(value)


def _logits(config: RnnConfig, output: torch.Tensor) -> torch.Tensor:
    if config.model:
        if output.shape[-1] != VOCABULARY_SIZE:
            raise ConfigError(f"model {config.model!r}: check 'train' needs its first output to be logits over "
                              f"h/e/l/o (last dimension {VOCABULARY_SIZE}), got shape {tuple(output.shape)}")
        return output
    features = output.shape[-1]
    rng = np.random.default_rng([config.seed, _READOUT_STREAM])
    readout = rng.standard_normal((features, VOCABULARY_SIZE)) / np.sqrt(features)
    return output @ torch.from_numpy(readout).to(output)


def _trainable(config: RnnConfig, module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """(name as the bare module calls it, parameter) for every parameter that requires grad, in order."""
    found = []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        plain = name.removeprefix("_orig_mod.")
        if not config.model:
            plain = plain.removeprefix(f"{WRAPPED_MODULE}.")
        found.append((plain, parameter))
    return found


def as_tuple(returned: object) -> tuple[torch.Tensor, ...]:
    """A module's return value as a tuple of tensors: a single tensor is one output, never its rows."""
    found = tuple(returned) if isinstance(returned, (tuple, list)) else (returned,)
    if not all(isinstance(tensor, torch.Tensor) for tensor in found):
        raise TypeError(f"the model returned {type(returned).__name__}: a tensor or a flat tuple of tensors is needed")
    return found
