"""What a config's check computes from a torch module a backend prepared: its forward outputs; the gradient
of a scalar loss with respect to every floating input and trainable parameter ("grad"); or K optimiser steps,
with the loss at every step and the final weights ("train"). The loss is the user's own (suite keys `loss` and
`targets`) where the suite names one; else a fixed, seeded weighted sum of the outputs for "grad", and the
hello next-character task for "train". Every autograd backend (eager, TorchScript, torch.export's module,
torch.compile) runs the same code here, so they differ only in the module they hand in.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from harness.backends.wrappers import FLATTENED_MODULE, WRAPPED_MODULE
from harness.errors import ConfigError, one_line
from harness.model.case import flatten_returned
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
        if config.loss:
            loss = users_loss(config, outputs)
        else:
            weights = loss_weights(config, [tuple(output.shape) for output in outputs])
            loss = sum(((output * torch.from_numpy(weight).to(output)).sum() for output, weight
                        in zip(outputs, weights, strict=True)), torch.zeros((), dtype=outputs[0].dtype))
        wanted = [tensor for _, tensor in differentiable] + [parameter for _, parameter in parameters]
        gradients = torch.autograd.grad(loss, wanted, allow_unused=True)
    result = {"loss": to_numpy(loss)}
    _say_if_zero(config, [name for name, _ in differentiable], gradients[:len(differentiable)])
    labels = [name for name, _ in differentiable] + [name for name, _ in parameters]
    for label, tensor, gradient in zip(labels, wanted, gradients, strict=True):
        result[f"grad.{label}"] = to_numpy(gradient if gradient is not None else torch.zeros_like(tensor))
    return result


class ZeroGradientWarning(UserWarning):
    """A floating input's gradient is zero everywhere: the loss does not depend on it."""


def _say_if_zero(config: RnnConfig, names: Sequence[str], gradients: Sequence[torch.Tensor | None]) -> None:
    """Warn (a note of the cell, in every report) for each input that takes gradients but got none: an argmax
    or a detach on its path, or a state the model never reads, makes the recorded grad.<input> all zeros."""
    zero = [name for name, gradient in zip(names, gradients, strict=True)
            if gradient is None or not bool(torch.any(gradient != 0))]
    if zero:
        warnings.warn(f"{config.model or 'the model'}: the gradient of the loss with respect to input(s) "
                      f"{', '.join(zero)} is zero everywhere: the loss does not depend on them (an argmax, a "
                      "detach, or an input the model ignores?)", ZeroGradientWarning, stacklevel=2)


def _training(config: RnnConfig, module: torch.nn.Module, tensors: list[torch.Tensor]) -> Outputs:
    """K optimiser steps from the module's weights, which are restored afterwards (a second run starts from
    the same weights). With the user's loss: on it, by SGD or Adam. Else plain SGD on the hello task: a bare
    RNN's outputs go through a fixed seeded readout to the 4 letters; a user's model's first output must
    already be logits over h/e/l/o."""
    parameters = _trainable(config, module)
    saved = [parameter.detach().clone() for _, parameter in parameters]
    adam = torch.optim.Adam([parameter for _, parameter in parameters], lr=config.learning_rate) if (
        config.optimizer == "adam") else None
    losses = []
    try:
        for _ in range(config.train_steps):
            with torch.enable_grad():
                loss = _training_loss(config, as_tuple(module(*tensors)))
                gradients = torch.autograd.grad(loss, [parameter for _, parameter in parameters], allow_unused=True)
            with torch.no_grad():
                for (_, parameter), gradient in zip(parameters, gradients, strict=True):
                    if adam is not None:
                        parameter.grad = gradient
                    elif gradient is not None:
                        parameter.sub_(config.learning_rate * gradient)
                if adam is not None:
                    adam.step()
            losses.append(loss.detach().clone())
        result = {"loss": to_numpy(torch.stack(losses))}
        result.update({f"weight.{name}": to_numpy(parameter.detach().clone()) for name, parameter in parameters})
        return result
    finally:
        with torch.no_grad():
            for (_, parameter), value in zip(parameters, saved, strict=True):
                parameter.copy_(value)
                parameter.grad = None


def _training_loss(config: RnnConfig, outputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    if config.loss:
        return users_loss(config, outputs)
    targets = torch.from_numpy(train_batch()[1])
    if config.batch_first:
        targets = targets.T.contiguous()
    logits = _logits(config, outputs[0])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCABULARY_SIZE), targets.reshape(-1))


def users_loss(config: RnnConfig, outputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The suite's `loss` function on the flattened outputs and the `targets` as tensors on their device:
    a scalar tensor, or a ConfigError (one line) naming the function."""
    from harness.model.factories import load_factory

    device = outputs[0].device
    targets = {name: to_torch(array).to(device) for name, array in _targets(config).items()}
    try:
        loss = load_factory(config.loss, what="loss")(outputs, targets)
    except Exception as error:  # the user's code
        raise ConfigError(f"loss {config.loss!r}: failed for {config.id}: "
                          f"{type(error).__name__}: {one_line(str(error), 300)}") from None
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ConfigError(f"loss {config.loss!r}: must return a floating scalar tensor, got {got}")
    return loss


@functools.lru_cache(maxsize=16)
def _targets(config: RnnConfig) -> dict[str, np.ndarray]:
    """The user's targets (the same every step and every run: drawn once per config)."""
    from harness.model.user_data import user_targets

    return user_targets(config)


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
        plain = name.removeprefix("_orig_mod.").removeprefix(f"{FLATTENED_MODULE}.")
        if not config.model:
            plain = plain.removeprefix(f"{WRAPPED_MODULE}.")
        found.append((plain, parameter))
    return found


def as_tuple(returned: object) -> tuple[torch.Tensor, ...]:
    """A module's return value as a tuple of tensors: a single tensor is one output, never its rows; nested
    tuples flattened in order."""
    found = tuple(flatten_returned(returned))
    if not all(isinstance(tensor, torch.Tensor) for tensor in found):
        raise TypeError(f"the model returned {type(returned).__name__}: a tensor or tuples of tensors are needed")
    return found
