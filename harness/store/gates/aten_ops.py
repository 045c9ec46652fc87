"""The aten operators an RNN export may call, shared by the TorchScript and torch.export gates."""

from __future__ import annotations

# aten operators (as `torch.<name>` or `ops.aten.<name>`): those the stored scripts and traces call, with a
# margin of pure tensor math that RNN language models use. Nothing that reads or writes a file
# (from_file, save, load), makes storage, starts threads or processes, or prints.
ATEN_OPS = frozenset({
    "__contains__", "__is__", "__isnot__", "__not__", "__and__", "__or__", "__getitem__", "_pack_padded_sequence",
    "_pad_packed_sequence", "_set_item", "abs", "add", "add_", "addmm", "all", "any", "append", "arange", "argmax",
    "argmin", "as_tensor", "bmm", "cat", "chunk", "clamp", "clone", "contiguous", "cpu", "detach", "device", "dim",
    "div", "dropout", "dropout_", "embedding", "empty", "empty_like", "eq", "exp", "expand", "expand_as",
    "feature_dropout", "flatten", "floordiv", "format", "full", "full_like", "gather", "ge", "gelu", "gru",
    "gru_cell", "gt", "index", "index_select", "layer_norm", "le", "len", "linear", "list", "log", "log_softmax",
    "lstm", "lstm_cell", "lt", "masked_fill", "matmul", "max", "mean", "min", "mm", "mul", "narrow", "ne", "neg",
    "numel", "ones", "ones_like", "permute", "pow", "relu", "remainder", "reshape", "rnn_relu", "rnn_relu_cell",
    "rnn_tanh", "rnn_tanh_cell", "scatter_", "select", "sigmoid", "size", "slice", "softmax", "sort", "split",
    "sqrt", "squeeze", "stack", "sub", "sum", "tanh", "to", "transpose", "type_as", "unbind", "unsqueeze", "view",
    "warn", "where", "zeros", "zeros_like",
    # LSTMCell / GRUCell stepped in Python (traced or exported), and the losses' pure math
    "unsafe_chunk", "unsafe_split", "split_with_sizes", "unsafe_split_with_sizes", "t", "baddbmm", "mul_",
    "sigmoid_", "tanh_", "squeeze_", "unsqueeze_", "copy_", "cumsum", "nll_loss", "mse_loss",
})
RECURRENT_ATEN_OPS = frozenset({"lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell",
                                 "rnn_relu_cell"})
