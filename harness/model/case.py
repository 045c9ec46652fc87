"""A built case: the seeded module, its named inputs, and sha256 fingerprints of both.

Models are built exactly as the reference notebook does: ``torch.manual_seed(seed)`` immediately
before constructing the module (inside ``fork_rng`` so the caller's RNG state is untouched), then
``.eval()``, then the dtype. Inputs and random initial states come from local NumPy generators
keyed on the seed, never from torch's global RNG (harness.model.inputs, which needs no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from harness.errors import ConfigError, one_line
from harness.model.axes import NAME, check_output_names, output_names
from harness.model.config import RnnConfig
from harness.model.factories import load_factory
from harness.model.hashing import array_sha256, arrays_sha256
from harness.model.inputs import build_inputs


@dataclass(frozen=True, kw_only=True)
class Case:
    """Everything a backend needs to run one config, plus what attribution needs to know."""

    config: RnnConfig
    module: torch.nn.Module
    inputs: dict[str, np.ndarray]
    weights_sha256: str
    inputs_sha256: str
    parameters_sha256: dict[str, str] = field(default_factory=dict)  # state_dict name -> that tensor's sha256
    export_inputs: dict[str, np.ndarray] | None = None  # the examples to export at, when not the inputs
    model_output_names: tuple[str, ...] = ()  # a user's model: what its forward returns, flattened
    # A user's model whose forward takes a tuple (an (h, c) state): how the flat inputs group into its arguments
    # (harness.model.user_data.UserInputs.groups); empty when each input is one argument.
    argument_groups: tuple[int, ...] = ()
    nested_outputs: bool = False  # a user's model returns nested tuples: flattened in order
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # the loss's targets (suite key `targets`)
    # Exported with a dynamic sequence length and batch, as users export a streaming model: the invariance
    # relations (harness.backends.relation_runs) run it at other shapes than its examples'.
    dynamic: bool = False

    @property
    def needs_flattening(self) -> bool:
        """Whether the torch backends take the model through harness.backends.wrappers.Flattened."""
        return bool(self.argument_groups) or self.nested_outputs

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)

    @property
    def examples(self) -> dict[str, np.ndarray]:
        """The inputs exporters, tracers and compilers see (at config.export_shape)."""
        return self.export_inputs if self.export_inputs is not None else self.inputs

    @property
    def forward_names(self) -> list[str]:
        """The names of what the module's forward returns."""
        return list(self.model_output_names) if self.config.model else output_names(self.config)

    @property
    def output_names(self) -> list[str]:
        """The names of what the config's check computes (the golden's tensors)."""
        inputs = self.input_names
        if self.config.inputs:  # a user's inputs: token ids and other integers take no gradient
            inputs = [name for name, array in self.inputs.items() if is_floating(array)]
        return check_output_names(self.config, self.forward_names, inputs, parameter_names(self.module))


def is_floating(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" or array.dtype.name == "bfloat16"


def regroup(flat: Sequence[Any], groups: Sequence[int]) -> list[Any]:
    """forward's arguments from the flat inputs: an array as it is (0), or a tuple of the next n (n)."""
    if not groups:
        return list(flat)
    arguments: list[Any] = []
    start = 0
    for size in groups:
        arguments.append(flat[start] if size == 0 else tuple(flat[start:start + size]))
        start += size or 1
    return arguments


def flatten_returned(returned: Any) -> list[Any]:
    """What forward returned, nested tuples and lists flattened in order (a tensor alone is one output)."""
    if isinstance(returned, (tuple, list)):
        return [leaf for item in returned for leaf in flatten_returned(item)]
    return [returned]


def flat_names(returned: Any, prefix: str = "output") -> list[str]:
    """output for a single tensor; output_0, output_1_0, output_1_1 ... for nested tuples, in order."""
    if not isinstance(returned, (tuple, list)):
        return [prefix]
    return [name for index, item in enumerate(returned) for name in flat_names(item, f"{prefix}_{index}")]


def parameter_names(module: torch.nn.Module) -> list[str]:
    """The trainable parameters' names, in module order."""
    return [name for name, parameter in module.named_parameters() if parameter.requires_grad]


def build_module(config: RnnConfig) -> torch.nn.Module:
    """The seeded torch.nn.RNN/LSTM/GRU (or the user's model), in eval mode and the config's dtype."""
    if config.model:
        return build_user_model(config)
    kwargs = dict(
        input_size=config.input_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        bias=config.bias,
        batch_first=config.batch_first,
        dropout=config.dropout,
        bidirectional=config.bidirectional,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.cell == "lstm":
            module: torch.nn.Module = torch.nn.LSTM(proj_size=config.proj_size, **kwargs)
        elif config.cell == "gru":
            module = torch.nn.GRU(**kwargs)
        else:
            module = torch.nn.RNN(nonlinearity=config.cell.removeprefix("rnn_"), **kwargs)
    return module.eval().to(getattr(torch, config.dtype))


def build_user_model(config: RnnConfig) -> torch.nn.Module:
    """The factory's module, built under the seed exactly as a bare RNN is; ConfigError (one line) when the
    factory fails or returns something else than a torch.nn.Module."""
    factory = load_factory(config.model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        try:
            module = factory(config)
        except Exception as error:  # the user's code: any failure to build is the user's to fix
            raise ConfigError(f"model {config.model!r}: the factory failed for {config.id}: "
                              f"{type(error).__name__}: {one_line(str(error), 300)}") from None
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model {config.model!r}: the factory returned {type(module).__name__}, "
                          "not a torch.nn.Module")
    if isinstance(module, torch.nn.RNNBase) and config.initial_state == "zeros" and not config.lengths:
        module = BareLstm(module) if isinstance(module, torch.nn.LSTM) else BareRnn(module)
    built: torch.nn.Module = module.eval().to(getattr(torch, config.dtype))
    return built


class BareRnn(torch.nn.Module):
    """A factory's bare nn.RNN or nn.GRU, called as ``rnn(x)`` with its outputs flat. TorchScript cannot
    script the bare module in torch 2.13 (no ``forward``), so, as for the built-in cases, it is wrapped."""

    output_names = ("output", "h_n")

    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output, h_n = self.rnn(x)
        return output, h_n


class BareLstm(torch.nn.Module):
    """A factory's bare nn.LSTM: its ``(output, (h_n, c_n))`` flattened to three outputs."""

    output_names = ("output", "h_n", "c_n")

    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        output, (h_n, c_n) = self.rnn(x)
        return output, h_n, c_n


def build_case(config: RnnConfig) -> Case:
    module = build_module(config)
    groups: tuple[int, ...] = ()
    if config.inputs:
        from harness.model.user_data import user_inputs

        given = user_inputs(config)
        inputs, groups = given.arrays, given.groups if given.nested else ()
    else:
        inputs = build_inputs(config)
    targets: dict[str, np.ndarray] = {}
    if config.targets:
        from harness.model.user_data import user_targets

        targets = user_targets(config)
    names, nested = model_output_names(config, module, inputs, groups) if config.model else ((), False)
    return Case(
        config=config,
        module=module,
        inputs=inputs,
        export_inputs=build_inputs(config, shape=config.export_shape) if config.reshaped_at_export else None,
        weights_sha256=weights_sha256(module),
        parameters_sha256=parameters_sha256(module),
        # The targets are data the loss reads: a change to them is a change of inputs.
        inputs_sha256=arrays_sha256({**inputs, **{f"target.{name}": array for name, array in targets.items()}}),
        model_output_names=names,
        argument_groups=groups,
        nested_outputs=nested,
        targets=targets,
    )


def model_output_names(config: RnnConfig, module: torch.nn.Module, inputs: dict[str, np.ndarray],
                       groups: Sequence[int] = ()) -> tuple[tuple[str, ...], bool]:
    """A user's model's output names, and whether it returns nested tuples: its ``output_names`` attribute
    (naming the flattened outputs), else "output" for one tensor and "output_0", "output_1_0".. for (nested)
    tuples, found by one eager call. ConfigError when forward fails or returns other types."""
    from harness.model.tensors import to_torch

    declared = getattr(module, "output_names", None)
    try:
        with torch.no_grad():
            returned = module(*regroup([to_torch(array) for array in inputs.values()], groups))
    except Exception as error:  # the user's code
        raise ConfigError(f"model {config.model!r}: its forward failed on {config.id}'s inputs "
                          f"{[tuple(array.shape) for array in inputs.values()]}: "
                          f"{type(error).__name__}: {one_line(str(error), 300)}") from None
    outputs = flatten_returned(returned)
    nested = isinstance(returned, (tuple, list)) and any(isinstance(item, (tuple, list)) for item in returned)
    if not outputs or not all(isinstance(output, torch.Tensor) for output in outputs):
        inside = ", ".join(sorted({type(output).__name__ for output in outputs})) if isinstance(
            returned, (tuple, list)) else ""
        raise ConfigError(f"model {config.model!r}: forward must return a tensor or (nested) tuples of tensors, "
                          f"got {type(returned).__name__}" + (f" holding {inside}" if inside else ""))
    if declared is not None:
        names = tuple(declared)
        if len(names) != len(outputs) or not all(isinstance(name, str) and NAME.fullmatch(name) for name in names):
            raise ConfigError(f"model {config.model!r}: output_names {names!r} must name each of its "
                              f"{len(outputs)} output(s) with letters, digits, '_', '.' or '-'")
        return names, nested
    return tuple(flat_names(returned)), nested


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over every parameter's name, shape, dtype and bytes, in state_dict order."""
    from harness.model.tensors import to_numpy

    arrays = {name: to_numpy(tensor) for name, tensor in module.state_dict().items()}
    return arrays_sha256(arrays)


def parameters_sha256(module: torch.nn.Module) -> dict[str, str]:
    """Each state_dict entry's sha256 (dtype, shape, then bytes: harness.model.hashing.array_sha256), in
    state_dict order: what names the parameters that changed when weights_sha256 differs."""
    from harness.model.tensors import to_numpy

    return {name: array_sha256(to_numpy(tensor)) for name, tensor in module.state_dict().items()}
