"""What a session is asked to do, validated once, from the CLI's or the plugin's option values."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.deadline import DEFAULT_CELL_BUDGET_S, parse_budget
from harness.errors import HarnessError
from harness.model.budget import DEFAULT_MAX_MEMORY, parse_bytes
from harness.model.shard import parse_shard
from harness.model.tolerance import BITWISE, Tolerance, TolerancePolicy
from harness.options import split_names

DEFAULT_THREADS = 1  # bitwise results depend on the intra-op thread count: pin it


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a Session needs to know; every field has the documented default."""

    suite: Path | None = None  # None: the packaged default suite
    golden_dir: Path | None = None  # None: store.golden.default_golden_dir()
    configs: tuple[str, ...] = ()  # () = every config of the suite
    backends: tuple[str, ...] = ()  # () = the default backends (CUDA ones where present)
    include_slow: bool = False
    override: Tolerance | None = None  # --atol/--rtol or --bitwise: one tolerance for every cell
    threads: int = DEFAULT_THREADS
    shard: tuple[int, int] | None = None
    live_reference: bool = False  # `harness check`: eager computed now instead of stored goldens
    label: str = ""
    equal_nan: bool = False  # NaN matches NaN at the same index
    max_memory: int = DEFAULT_MAX_MEMORY  # bytes a config may need (estimated when the suite is loaded)
    allow_nonfinite: bool = False  # record goldens that hold NaN or inf
    cache: bool = True  # keep fresh exports in the export cache and reuse them (--no-cache)
    cache_dir: Path | None = None  # None: store.cache.default_cache_dir()
    jobs: int = 1  # worker processes for a run's cells (-j)
    cell_budget: float = DEFAULT_CELL_BUDGET_S  # seconds one cell may take, any backend (--cell-budget)

    @property
    def backends_named(self) -> bool:
        """The user named the backends: one that cannot run here is then an error (exit 2)."""
        return bool(self.backends)


@dataclass(frozen=True, kw_only=True)
class ProbeSettings:
    repeats: int = 5
    fresh_process: bool = True
    strict_settings: bool = False


def settings_from(values: Mapping[str, Any], **overrides: Any) -> Settings:
    """Settings from option values keyed by option name (argparse's or pytest's); bad values are one
    HarnessError each, named by their CLI flag."""
    threads = values.get("threads", DEFAULT_THREADS)
    if threads is None:
        threads = DEFAULT_THREADS
    if threads < 1:
        raise HarnessError(f"--threads must be at least 1, got {threads}")
    shard = values.get("shard")
    fields: dict[str, Any] = {
        "suite": values.get("suite"),
        "golden_dir": values.get("golden_dir"),
        "configs": tuple(values.get("config") or ()),
        "backends": split_names(values.get("backend")),
        "include_slow": bool(values.get("all")),
        "override": tolerance_override(values.get("atol"), values.get("rtol"), bool(values.get("bitwise"))),
        "threads": int(threads),
        "shard": parse_shard(shard) if shard else None,
        "label": values.get("label") or "",
        "equal_nan": bool(values.get("equal_nan")),
        "max_memory": parse_bytes(values["max_memory"]) if values.get("max_memory") else DEFAULT_MAX_MEMORY,
        "allow_nonfinite": bool(values.get("allow_nonfinite")),
        "cache": not values.get("no_cache"),
        "cache_dir": values.get("cache_dir"),
        "jobs": resolve_jobs(values.get("jobs")),
        "cell_budget": parse_budget(values.get("cell_budget")),
    }
    return Settings(**{**fields, **overrides})


def resolve_jobs(value: str | int | None) -> int:
    """-j: a positive integer, or auto (the CPUs this process may use); None is 1."""
    if value is None:
        return 1
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        jobs = int(value)
    except (TypeError, ValueError):
        jobs = 0
    if jobs < 1 or isinstance(value, bool):
        raise HarnessError(f"-j/--jobs must be a positive integer or auto, got {value!r}")
    return jobs


def probe_settings_from(values: Mapping[str, Any]) -> ProbeSettings:
    repeats = values.get("repeats", 5)
    if repeats is None or repeats < 1:
        raise HarnessError(f"--repeats must be at least 1, got {repeats}")
    return ProbeSettings(repeats=int(repeats), fresh_process=not values.get("no_fresh_process"),
                         strict_settings=bool(values.get("strict_settings")))


def tolerance_override(atol: float | None, rtol: float | None, bitwise: bool) -> Tolerance | None:
    """--bitwise, or --atol with --rtol (finite, >= 0), or nothing."""
    pair = Tolerance.pair(atol, rtol, where="--atol/--rtol")
    if bitwise and pair is not None:
        raise HarnessError("--bitwise excludes --atol/--rtol")
    return BITWISE if bitwise else pair


def policy_for(settings: Settings, per_config: dict[str, Tolerance]) -> TolerancePolicy:
    return TolerancePolicy(override=settings.override, per_config=dict(per_config), equal_nan=settings.equal_nan)
