"""The immutable description of one seeded RNN case: its fields, validation, id and content hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from harness.errors import ConfigError

Cell = Literal["rnn_tanh", "rnn_relu", "lstm", "gru"]
DType = Literal["float32", "float64", "float16", "bfloat16"]
InitialState = Literal["zeros", "random"]
InputKind = Literal["hello", "random"]

CELLS: tuple[str, ...] = get_args(Cell)
DTYPES: tuple[str, ...] = get_args(DType)
HELLO_SEQ_LEN = 3
HELLO_BATCH = 5
VOCABULARY_SIZE = 4  # h, e, l, o

_CELL_ID = {"rnn_tanh": "rnn", "rnn_relu": "rnnrelu", "lstm": "lstm", "gru": "gru"}
# An unknown dtype has no id: messages then show the raw fields.
_DTYPE_ID = {"float64": "f64", "float16": "f16", "bfloat16": "bf16"}
MAX_SEED = 2**63 - 1  # torch.manual_seed and NumPy generators take seeds in 0..2^63-1
MAX_SIZE = 2**31 - 1  # sizes beyond a C int are no RNN anyone runs; the memory budget refuses far less
MAX_LAYERS = 1024


@dataclass(frozen=True, kw_only=True)
class RnnConfig:
    """One seeded recurrent case. Defaults are the reference notebook case."""

    cell: Cell = "rnn_tanh"
    input_size: int = VOCABULARY_SIZE
    hidden_size: int = 8
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    dropout: float = 0.0
    proj_size: int = 0
    dtype: DType = "float32"
    seed: int = 0
    initial_state: InitialState = "zeros"
    input: InputKind = "hello"
    seq_len: int = HELLO_SEQ_LEN
    batch: int = HELLO_BATCH

    def __post_init__(self) -> None:
        problem = _first_problem(self)
        if problem:
            raise ConfigError(f"config {self.id_or_fields()}: {problem}")

    @property
    def id(self) -> str:
        """A readable id, stable across runs and machines; only non-default axes appear."""
        parts = [_CELL_ID[self.cell]]
        if self.input_size != VOCABULARY_SIZE:
            parts.append(f"i{self.input_size}")
        parts.append(f"h{self.hidden_size}")
        if self.num_layers != 1:
            parts.append(f"l{self.num_layers}")
        if self.bidirectional:
            parts.append("bi")
        if self.batch_first:
            parts.append("bf")
        if not self.bias:
            parts.append("nobias")
        if self.dropout:
            parts.append(f"do{self.dropout:g}")
        if self.proj_size:
            parts.append(f"p{self.proj_size}")
        if self.dtype != "float32":
            parts.append(_DTYPE_ID[self.dtype])
        if self.initial_state == "random":
            parts.append("h0rand")
        if self.input == "random":
            parts.append(f"t{self.seq_len}b{self.batch}")
        parts.append(f"s{self.seed}")
        return "-".join(parts)

    def id_or_fields(self) -> str:
        """The id when the fields allow one, else the raw fields (for error messages)."""
        try:
            return repr(self.id)
        except (KeyError, ValueError, OverflowError, TypeError):
            return "{" + ", ".join(f"{key}={_short_number(value)}" for key, value in self.to_dict().items()) + "}"

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_features(self) -> int:
        """Features of one direction's output: proj_size when projecting, else hidden_size."""
        return self.proj_size or self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of every field: changes whenever the case changes."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> RnnConfig:
        """Build from a suite or manifest table; unknown keys and wrong types are ConfigErrors."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        for name, value in fields.items():
            expected = _FIELD_TYPES[name]
            if not _has_type(value, expected):
                raise ConfigError(f"config key {name!r} must be {expected.__name__}, got {_short_number(value)}")
        return cls(**fields)


_FIELD_TYPES: dict[str, type] = {
    "cell": str, "input_size": int, "hidden_size": int, "num_layers": int, "bidirectional": bool,
    "batch_first": bool, "bias": bool, "dropout": float, "proj_size": int, "dtype": str, "seed": int,
    "initial_state": str, "input": str, "seq_len": int, "batch": int,
}


def _has_type(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and _fits_a_float(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _fits_a_float(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _first_problem(config: RnnConfig) -> str | None:
    """The first reason the config cannot be built, or None."""
    choices = {"cell": CELLS, "dtype": DTYPES, "initial_state": get_args(InitialState),
               "input": get_args(InputKind)}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            return f"{name} must be one of {', '.join(allowed)}, got {_short_number(getattr(config, name))}"
    if config.proj_size < 0:
        return f"proj_size must be non-negative, got {_short_number(config.proj_size)}"
    for name in ("input_size", "hidden_size", "num_layers", "seq_len", "batch"):
        if getattr(config, name) < 1:
            return f"{name} must be at least 1, got {_short_number(getattr(config, name))}"
    for name, largest in (("input_size", MAX_SIZE), ("hidden_size", MAX_SIZE), ("seq_len", MAX_SIZE),
                          ("batch", MAX_SIZE), ("proj_size", MAX_SIZE), ("num_layers", MAX_LAYERS)):
        if getattr(config, name) > largest:
            return f"{name} must be at most {largest}, got {_short_number(getattr(config, name))}"
    if not 0 <= config.seed <= MAX_SEED:
        return f"seed must be in 0..2^63-1, got {_short_number(config.seed)}"
    if not 0.0 <= config.dropout < 1.0:
        return f"dropout must be in [0, 1), got {config.dropout}"
    if config.dropout and config.num_layers == 1:
        return "dropout acts between layers: it needs num_layers >= 2"
    if config.proj_size and config.cell != "lstm":
        return f"proj_size is an LSTM feature, not available for cell {config.cell!r}"
    if config.proj_size and not 0 < config.proj_size < config.hidden_size:
        return f"proj_size must be in [1, hidden_size={config.hidden_size}), got {config.proj_size}"
    if config.input == "hello":
        if config.input_size != VOCABULARY_SIZE:
            return f"input 'hello' is one-hot over h/e/l/o: input_size must be 4, got {config.input_size}"
        if (config.seq_len, config.batch) != (HELLO_SEQ_LEN, HELLO_BATCH):
            return "input 'hello' is the fixed 3 x 5 notebook batch: leave seq_len and batch unset"
    return None


def _short_number(value: Any) -> str:
    """A value for a message: huge integers by their size (str() of a 5000-digit int raises), the rest as repr."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)
