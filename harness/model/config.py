"""The immutable description of one seeded RNN case: its fields, validation, id and content hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from harness.errors import ConfigError

Cell = Literal["rnn_tanh", "rnn_relu", "lstm", "gru"]
DType = Literal["float32", "float64", "float16", "bfloat16"]
InitialState = Literal["zeros", "random"]
InputKind = Literal["hello", "random", "gaussian"]
Check = Literal["forward", "grad", "train"]
Optimizer = Literal["sgd", "adam"]
# Invariance relations a case may ask for (harness.judging.relations): what must hold whatever the backend.
RELATIONS: tuple[str, ...] = ("chunked", "batch", "zero-state", "padded")
_RELATION_ID = {"chunked": "chunk", "batch": "bslice", "zero-state": "zs", "padded": "pad"}

CELLS: tuple[str, ...] = get_args(Cell)
CHECKS: tuple[str, ...] = get_args(Check)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
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
    # Fields added after the first goldens: left out of to_dict (and the content hash) at their defaults, so
    # every config that does not use them keeps the hash its golden was recorded under.
    lengths: tuple[int, ...] = ()  # one valid length per batch element: run as a PackedSequence
    export_seq_len: int = 0  # export / trace / compile at this sequence length (0: the config's own)
    export_batch: int = 0  # ... and this batch (0: the config's own), then run at the config's shape
    model: str = ""  # "package.module:factory": a user's model instead of the bare torch.nn RNN
    check: Check = "forward"
    train_steps: int = 0  # check "train": SGD steps on the hello next-character task (or on the user's loss)
    learning_rate: float = 0.1
    # A user's model's own data and objective, each "package.module:function" (harness.model.user_data):
    inputs: str = ""  # function(config, rng) -> ordered named NumPy arrays (a tuple of arrays: one tuple argument)
    targets: str = ""  # function(config, rng) -> the named targets of the loss
    loss: str = ""  # function(outputs, targets) -> a scalar tensor: what grad differentiates and train minimises
    optimizer: Optimizer = "sgd"  # check "train" with a loss: plain SGD or Adam, at learning_rate
    relations: tuple[str, ...] = ()  # invariance relations judged on every backend (RELATIONS), in this order

    def __post_init__(self) -> None:
        problem = _first_problem(self)
        if problem:
            raise ConfigError(f"config {self.id_or_fields()}: {problem}")

    @property
    def id(self) -> str:
        """A readable id, stable across runs and machines; only non-default axes appear."""
        parts = [_model_id(self.model)] if self.model else []
        cell = _CELL_ID[self.cell]
        if not (parts and parts[0].endswith((f"-{cell}", f".{cell}"))):  # "wlm.build-lstm", not "...-lstm-lstm"
            parts.append(cell)
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
        if self.inputs:  # the user's function draws them: its name, and the shape it is asked for
            parts.append(f"{_function_id(self.inputs)}-t{self.seq_len}b{self.batch}")
        elif self.input != "hello":
            parts.append(("gauss-" if self.input == "gaussian" else "") + f"t{self.seq_len}b{self.batch}")
        if self.lengths:
            parts.append("len" + "_".join(map(str, self.lengths)))
        if self.export_seq_len or self.export_batch:
            parts.append(f"xt{self.export_seq_len or self.seq_len}b{self.export_batch or self.batch}")
        if self.check == "grad":
            parts.append("grad")
        elif self.check == "train":
            rate = "" if self.learning_rate == _DEFAULTS["learning_rate"] else f"lr{self.learning_rate:g}"
            parts.append(f"train{self.train_steps}{rate}" + ("-adam" if self.optimizer == "adam" else ""))
        if self.loss and self.check != "forward":
            parts.append(_function_id(self.loss))
        if self.relations:
            parts.append("rel." + ".".join(_RELATION_ID.get(name, name) for name in self.relations))
        parts.append(f"s{self.seed}")  # last: `-k rnn-h8-s0` selects that config, not its gradient's too
        return "-".join(parts)

    @property
    def export_shape(self) -> tuple[int, int]:
        """(seq_len, batch) the backends export, trace or compile at."""
        return self.export_seq_len or self.seq_len, self.export_batch or self.batch

    @property
    def reshaped_at_export(self) -> bool:
        return self.export_shape != (self.seq_len, self.batch)

    @property
    def plain_rnn(self) -> bool:
        """A bare torch.nn RNN/LSTM/GRU stack (not a user's model): the float64 oracle and the RNN checks apply."""
        return not self.model

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
        """Every field, except the later ones at their defaults (see above); lengths as a list."""
        fields = dataclasses.asdict(self)
        for name in _LATER_FIELDS:
            if fields[name] == _DEFAULTS[name]:
                del fields[name]
        for name in ("lengths", "relations"):
            if name in fields:
                fields[name] = list(fields[name])
        return fields

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
        if "lengths" in fields:
            lengths = fields["lengths"]
            if len(lengths) > MAX_LENGTHS or not all(_has_type(length, int) for length in lengths):
                raise ConfigError(f"config key 'lengths' must be a list of at most {MAX_LENGTHS} integers, "
                                  f"got {_short_number(lengths)}")
            fields = {**fields, "lengths": tuple(lengths)}
        if "relations" in fields:
            relations = fields["relations"]
            if len(relations) > len(RELATIONS) or not all(isinstance(name, str) for name in relations):
                raise ConfigError(f"config key 'relations' must be a list of {', '.join(map(repr, RELATIONS))}, "
                                  f"got {_short_number(relations)}")
            fields = {**fields, "relations": tuple(relations)}
        return cls(**fields)


_FIELD_TYPES: dict[str, type] = {
    "cell": str, "input_size": int, "hidden_size": int, "num_layers": int, "bidirectional": bool,
    "batch_first": bool, "bias": bool, "dropout": float, "proj_size": int, "dtype": str, "seed": int,
    "initial_state": str, "input": str, "seq_len": int, "batch": int, "lengths": list, "export_seq_len": int,
    "export_batch": int, "model": str, "check": str, "train_steps": int, "learning_rate": float,
    "inputs": str, "targets": str, "loss": str, "optimizer": str, "relations": list,
}
_LATER_FIELDS = ("lengths", "export_seq_len", "export_batch", "model", "check", "train_steps", "learning_rate",
                 "inputs", "targets", "loss", "optimizer", "relations")
USER_FUNCTIONS = ("inputs", "targets", "loss")  # the suite keys that name a user's function
_DEFAULTS = {field.name: field.default for field in dataclasses.fields(RnnConfig)}
MAX_LENGTHS = 65536
MAX_TRAIN_STEPS = 100_000
MODEL_REFERENCE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def _model_id(reference: str) -> str:
    """The id part of a model reference: its factory's module and name ("hello_char_model.build")."""
    module, _, factory = reference.partition(":")
    return f"{module.rpartition('.')[2]}.{factory}".replace("_", "-")


def _function_id(reference: str) -> str:
    """The id part of a user's function reference: the function's name ("tokens", "mse")."""
    return reference.rpartition(":")[2].replace("_", "-")


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
               "input": get_args(InputKind), "check": CHECKS, "optimizer": OPTIMIZERS}
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
    if config.input == "hello" and not config.inputs:
        if config.input_size != VOCABULARY_SIZE:
            return f"input 'hello' is one-hot over h/e/l/o: input_size must be 4, got {config.input_size}"
        if (config.seq_len, config.batch) != (HELLO_SEQ_LEN, HELLO_BATCH):
            return "input 'hello' is the fixed 3 x 5 notebook batch: leave seq_len and batch unset"
    return _later_problem(config)


def _later_problem(config: RnnConfig) -> str | None:
    """Problems with the fields for packed lengths, export shapes, users' models and checks."""
    if config.lengths:
        if len(config.lengths) != config.batch:
            return f"lengths needs one length per batch element: {config.batch}, got {len(config.lengths)}"
        if not all(1 <= length <= config.seq_len for length in config.lengths):
            return f"every length must be in 1..seq_len={config.seq_len}, got {list(config.lengths)}"
        if config.batch_first:
            return "lengths are run sequence-first (pack_padded_sequence): leave batch_first unset"
    for name in ("export_seq_len", "export_batch"):
        if not 0 <= getattr(config, name) <= MAX_SIZE:
            return f"{name} must be in 1..{MAX_SIZE} (0: the config's own), got {_short_number(getattr(config, name))}"
    if config.reshaped_at_export and config.input == "hello":
        return "export_seq_len / export_batch need inputs of any shape: input 'random' or 'gaussian'"
    if config.reshaped_at_export and config.lengths:
        return "export_seq_len / export_batch and lengths together are not supported: use one per case"
    if config.model and not MODEL_REFERENCE.fullmatch(config.model):
        return f"model must be 'package.module:factory', got {_short_number(config.model)}"
    problem = _user_function_problem(config) or _relations_problem(config)
    if problem:
        return problem
    if config.check == "train":
        if not 1 <= config.train_steps <= MAX_TRAIN_STEPS:
            return f"check 'train' needs train_steps in 1..{MAX_TRAIN_STEPS}, got {_short_number(config.train_steps)}"
        if not 0.0 < config.learning_rate <= 100.0:
            return f"learning_rate must be in (0, 100], got {config.learning_rate}"
        if not config.loss and (config.input != "hello" or config.lengths or config.reshaped_at_export):
            return ("check 'train' without a loss learns the hello next-character task: input 'hello', no lengths "
                    "or export shape (give `loss` and `targets` to train on your own data)")
    elif config.train_steps or config.learning_rate != _DEFAULTS["learning_rate"] or config.optimizer != "sgd":
        return "train_steps, learning_rate and optimizer belong to check 'train'"
    return None


def _relations_problem(config: RnnConfig) -> str | None:
    """Problems with `relations`: known names, once each, for a built-in stack's forward pass, and what each needs."""
    if not config.relations:
        return None
    unknown = [name for name in config.relations if name not in RELATIONS]
    if unknown:
        return f"relations must be among {', '.join(map(repr, RELATIONS))}, got {_short_number(unknown[0])}"
    if len(set(config.relations)) != len(config.relations):
        return f"relations lists a relation twice: {list(config.relations)}"
    if config.model or config.check != "forward" or config.lengths or config.reshaped_at_export:
        return ("relations are judged on a built-in RNN's forward pass: no model, check, lengths or export shape "
                "(a case of their own)")
    needs = {"chunked": (config.seq_len >= 3, "seq_len of at least 3 (it is cut in 2 and in 3)"),
             "batch": (config.batch >= 2, "a batch of at least 2"),
             "zero-state": (config.initial_state == "zeros", "initial_state 'zeros' (no state against zeros)"),
             "padded": (not config.batch_first and config.initial_state == "zeros",
                        "a sequence-first batch and a zero initial state (pack_padded_sequence takes no state)")}
    for name in config.relations:
        holds, what = needs[name]
        if not holds:
            return f"relation {name!r} needs {what}"
    return None


def _user_function_problem(config: RnnConfig) -> str | None:
    """Problems with `inputs`, `targets` and `loss`: references to a user's functions, for a user's model."""
    for name in USER_FUNCTIONS:
        reference = getattr(config, name)
        if reference and not MODEL_REFERENCE.fullmatch(reference):
            return f"{name} must be 'package.module:function', got {_short_number(reference)}"
        if reference and not config.model:
            return f"{name} belongs to a user's model: give `model` too (built-in RNNs take the built-in inputs)"
    if config.inputs:
        if config.input != "hello" or config.lengths or config.initial_state != "zeros":
            return ("inputs names your function: leave input, lengths and initial_state unset (it returns every "
                    "argument of forward, states included)")
        if config.reshaped_at_export:
            return "export_seq_len / export_batch need the built-in inputs: not supported with `inputs`"
    if (config.targets or config.loss) and config.check == "forward":
        return "targets and loss belong to checks 'grad' and 'train'"
    if config.targets and not config.loss:
        return "targets are what a loss compares with: give `loss` too"
    return None


def _short_number(value: Any) -> str:
    """A value for a message: huge integers by their size (str() of a 5000-digit int raises), the rest as repr."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)
