"""Deterministic, even sharding of a suite: `--shard K/N`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N, or a HarnessError saying what is wrong."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match:
        raise HarnessError(f"--shard must look like K/N (e.g. 2/3), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        raise HarnessError(f"--shard {text}: K must be between 1 and N")
    return index, count


def select_shard(items: Sequence[T], index: int, count: int) -> tuple[T, ...]:
    """Round-robin in suite order: shard sizes differ by at most one, every item lands in exactly
    one shard, and each shard gets a mix of cheap and expensive cases."""
    return tuple(item for position, item in enumerate(items) if position % count == index - 1)
