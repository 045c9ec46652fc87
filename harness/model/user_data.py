"""A user's own inputs and targets, from the functions a suite names (`inputs`, `targets`).

Each is called as ``function(config, rng)``: ``rng`` is a ``numpy.random.Generator`` seeded from the config (a
stream of its own, so inputs and targets never share draws). It returns an ordered mapping of names to NumPy
arrays of any dtype and shape. An input's value may be a tuple of arrays: ``forward`` gets it as one tuple of
tensors (an ``(h, c)`` state). Everything else sees the inputs flattened: a tuple ``hidden`` of two arrays is
``hidden_0`` and ``hidden_1``, the names the exported models take and the golden stores.

Calling these functions runs the user's code, as building the model does: only the commands that build models
do it. A replay reads the inputs the golden stored instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import ConfigError, one_line
from harness.model.axes import NAME
from harness.model.config import RnnConfig
from harness.model.factories import load_factory

_INPUTS_STREAM = 6  # NumPy streams keyed on [seed, stream], beside the built-in ones (harness.model.inputs)
_TARGETS_STREAM = 7
MAX_ARRAY_BYTES = 2**30  # one array of a GiB is no seeded test case: a bug in the function


@dataclass(frozen=True, kw_only=True)
class UserInputs:
    """The flattened inputs, and how forward takes them: one entry per argument, 0 for an array passed as it
    is, n for a tuple of the next n arrays."""

    arrays: dict[str, np.ndarray]
    groups: tuple[int, ...]

    @property
    def nested(self) -> bool:
        return any(self.groups)


def user_inputs(config: RnnConfig) -> UserInputs:
    """The arguments of the model's forward, from the suite's `inputs` function."""
    returned = _call(config, "inputs", _INPUTS_STREAM)
    arrays: dict[str, np.ndarray] = {}
    groups = []
    for name, value in returned.items():
        if isinstance(value, (tuple, list)):
            if not value:
                raise ConfigError(f"inputs {config.inputs!r}: {name!r} is an empty tuple")
            groups.append(len(value))
            for index, item in enumerate(value):
                _add(arrays, f"{name}_{index}", _array(config, "inputs", f"{name}[{index}]", item), config)
        else:
            groups.append(0)
            _add(arrays, name, _array(config, "inputs", name, value), config)
    return UserInputs(arrays=arrays, groups=tuple(groups))


def user_targets(config: RnnConfig) -> dict[str, np.ndarray]:
    """The named targets of the loss, from the suite's `targets` function (none without one)."""
    if not config.targets:
        return {}
    returned = _call(config, "targets", _TARGETS_STREAM)
    return {name: _array(config, "targets", name, value) for name, value in returned.items()}


def _call(config: RnnConfig, key: str, stream: int) -> Mapping[str, Any]:
    reference = getattr(config, key)
    function = load_factory(reference, what=key)
    rng = np.random.default_rng([config.seed, stream])
    try:
        returned = function(config, rng)
    except Exception as error:  # the user's code: any failure is the user's to fix
        raise ConfigError(f"{key} {reference!r}: failed for {config.id}: "
                          f"{type(error).__name__}: {one_line(str(error), 300)}") from None
    if not isinstance(returned, Mapping) or not returned:
        raise ConfigError(f"{key} {reference!r}: must return a non-empty dict of named NumPy arrays, "
                          f"got {type(returned).__name__}")
    for name in returned:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(f"{key} {reference!r}: name {name!r} must be letters, digits, '_', '.' or '-' "
                              "(at most 64)")
    return returned


def _array(config: RnnConfig, key: str, name: str, value: Any) -> np.ndarray:
    reference = getattr(config, key)
    if not isinstance(value, np.ndarray):
        raise ConfigError(f"{key} {reference!r}: {name} must be a NumPy array, got {type(value).__name__}")
    if value.dtype.kind not in "biuf" and value.dtype.name != "bfloat16":
        raise ConfigError(f"{key} {reference!r}: {name} has dtype {value.dtype}: numbers only")
    if value.nbytes > MAX_ARRAY_BYTES:
        raise ConfigError(f"{key} {reference!r}: {name} holds {value.nbytes} bytes (at most {MAX_ARRAY_BYTES})")
    return np.ascontiguousarray(value)


def _add(arrays: dict[str, np.ndarray], name: str, array: np.ndarray, config: RnnConfig) -> None:
    if name in arrays or not NAME.fullmatch(name):
        raise ConfigError(f"inputs {config.inputs!r}: flattened name {name!r} is taken twice or too long "
                          "(a tuple `hidden` becomes hidden_0, hidden_1, ...)")
    arrays[name] = array
