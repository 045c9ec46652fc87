"""Collect what upstream tools say while preparing a backend, so it becomes a finding, not noise."""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator

from harness.errors import printable

# Loggers that print on every export (e.g. "torchvision is not installed. Skipping ...") -> the level they are
# held at during one. torch's structured trace log ("torch.__trace") is always at DEBUG and answers any handler
# that asks, so pytest's log capture showed dozens of empty `DEBUG torch.__trace` lines with every failing
# export: above CRITICAL it records nothing.
_NOISY_LOGGERS = {"torch.onnx": logging.ERROR, "torch.export": logging.ERROR, "torch._dynamo": logging.ERROR,
                  "torch.fx": logging.ERROR, "onnxscript": logging.ERROR, "torch.__trace": logging.CRITICAL + 1}


@contextlib.contextmanager
def quiet_upstream_logging() -> Iterator[None]:
    """Hold upstream exporters' loggers (the structured trace log included) quiet for the block, then restore."""
    saved_levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name, level in _NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, saved in saved_levels.items():
            logging.getLogger(name).setLevel(saved)


@contextlib.contextmanager
def captured_upstream_messages() -> Iterator[list[str]]:
    """Yield a list that fills with the distinct warnings raised inside the block (first lines).

    Upstream output is kept off the user's terminal, including what C++ code writes straight to
    file descriptors 1 and 2 (the legacy exporter dumps its whole IR graph there on failure), and
    upstream logging (quiet_upstream_logging), also where pytest captures logs.
    """
    notes: list[str] = []
    with quiet_upstream_logging():
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            _file_descriptors_silenced(),
        ):
            warnings.simplefilter("always")
            yield notes
        for warning in caught:
            line = normalized_note(f"{warning.category.__name__}: {str(warning.message).splitlines()[0]}")
            if line not in notes:
                notes.append(line)


@contextlib.contextmanager
def _file_descriptors_silenced() -> Iterator[None]:
    """Point fds 1 and 2 at /dev/null for the block, then restore them."""
    for stream in (sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        _flush_c_stdio()  # C++ output buffered while the fds pointed at /dev/null must land there
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in saved:
            os.close(descriptor)


def _flush_c_stdio() -> None:
    """fflush(NULL): off a terminal, C stdio (and std::cout) buffers until exit otherwise."""
    with contextlib.suppress(OSError, AttributeError):  # no C library to reach: nothing buffered to lose
        ctypes.CDLL(None).fflush(None)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message, without terminal colour codes
    (torch's exporter colours its errors; a report file or golden must not hold escape sequences)."""
    text = _ANSI.sub("", str(error)).strip().splitlines()
    line = f"{type(error).__name__}: {text[0] if text else ''}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


DETAIL_LIMIT = 4096  # characters of an upstream error kept whole: TorchScript's run to a few hundred


def full_message(error: BaseException, limit: int = DETAIL_LIMIT) -> str:
    """An exception's whole message, every line of it (TorchScript's source line and `<--- HERE` marker
    included): its type before the first line, colour codes removed, each line printable (control characters
    escaped, harness.errors.printable), at most `limit` characters, cut at a line and saying what was left out."""
    text = _ANSI.sub("", str(error)).strip().splitlines()
    lines = [f"{type(error).__name__}: {text[0] if text else ''}", *(line.rstrip() for line in text[1:])]
    escaped = [printable(line) for line in lines]
    kept: list[str] = []
    size = 0
    for line in escaped:
        size += len(line) + 1
        if size > limit:
            break
        kept.append(line)
    if len(kept) == len(escaped):
        return "\n".join(kept)
    kept = kept or [escaped[0][: limit - 3] + "..."]  # one line longer than the limit: cut within it
    left = len(escaped) - len(kept)
    return "\n".join([*kept, f"... ({left} more line{'s' if left > 1 else ''} left out)"] if left else kept)


def normalized_note(text: str) -> str:
    """A warning's first line with indexed lists collapsed, so equal warnings group together.

    "self.w[0], self.w[1], self.w[2] were assigned" -> "self.w[...] were assigned".
    """
    return re.sub(r"([\w.]+)\[\d+\](?:, \1\[\d+\])*", r"\1[...]", text)
