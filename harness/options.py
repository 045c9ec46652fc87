"""Every option of the harness, defined once: the CLI and the pytest plugin both build theirs from
this table, so names, defaults and help texts cannot drift apart.

A CLI flag `--golden-dir` is `--harness-golden-dir` in pytest; the value lands under the same name
(`golden_dir`) in both, and `harness.session.settings.settings_from` turns those values into Settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["flag", "value", "append"]
RUN = ("run", "check", "replay")
PROBING = ("run", "check")  # the commands that can run the determinism probes after the cells
SELECTING = ("run", "check", "probe", "record", "replay")
EXPORTING = ("run", "check", "probe", "record")  # the commands that export models (and use the export cache)
PLUGIN_PREFIX = "--harness-"


@dataclass(frozen=True, kw_only=True)
class Option:
    """One option: its name (the settings field), flag, help, and where it appears."""

    name: str
    help: str
    kind: Kind = "value"
    type: Callable[[str], Any] | None = None
    default: Any = None
    metavar: str | None = None
    commands: tuple[str, ...] = ()  # CLI subcommands that take it
    plugin: bool = False  # offered by the pytest plugin as --harness-<flag>
    flag_name: str = ""  # the flag's words when they differ from the name
    short: str = ""  # a one-letter CLI alias, e.g. -v (the plugin has none: pytest owns them)

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name).replace("_", "-")

    @property
    def plugin_flag(self) -> str:
        return PLUGIN_PREFIX + self.name.replace("_", "-")

    def argparse_kwargs(self) -> dict[str, Any]:
        if self.kind == "flag":
            return {"action": "store_true", "help": self.help, "dest": self.name}
        kwargs: dict[str, Any] = {"help": self.help, "dest": self.name, "metavar": self.metavar,
                                  "default": self.default}
        if self.type is not None:
            kwargs["type"] = self.type
        if self.kind == "append":
            kwargs["action"] = "append"
        return kwargs


def choice(*allowed: str) -> Callable[[str], str]:
    """An option type that takes only these words (argparse prints the refusal as a usage error, exit 2)."""
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    parse.__name__ = "|".join(allowed)
    return parse


OPTIONS: tuple[Option, ...] = (
    Option(name="suite", type=Path, metavar="FILE", commands=("list", *SELECTING, "prune", "bundle", "explain"),
           plugin=True,
           help="suite TOML file (default: the packaged default suite)"),
    Option(name="golden_dir", type=Path, metavar="DIR", plugin=True,
           commands=("run", "record", "show", "prune", "replay", "bundle", "review", "probe", "explain"),
           help="golden directory (default: golden/ of this checkout when run from one, else ./golden; "
                "in pytest: <rootdir>/golden or the ini option harness_golden_dir; probe reads only the "
                "backends recorded as unable to take a user's model)"),
    Option(name="config", kind="append", metavar="ID", commands=SELECTING,
           help="only this config (repeatable; pytest selects with -k instead)"),
    Option(name="backend", kind="append", metavar="NAME", commands=(*SELECTING, "bundle", "explain"), plugin=True,
           help="only this backend or family (repeatable, or comma-separated); default: every CPU backend, "
                "plus the CUDA ones where CUDA is present"),
    Option(name="all", kind="flag", commands=SELECTING, plugin=True, help="include cells tagged slow"),
    Option(name="shard", metavar="K/N", commands=RUN, plugin=True,
           help="only shard K of N of the suite (deterministic, even, disjoint)"),
    Option(name="atol", type=float, metavar="A", commands=RUN, plugin=True,
           help="absolute tolerance for every cell (with --rtol; finite, >= 0)"),
    Option(name="rtol", type=float, metavar="R", commands=RUN, plugin=True,
           help="relative tolerance for every cell (with --atol; finite, >= 0)"),
    Option(name="bitwise", kind="flag", commands=RUN, plugin=True, help="demand bitwise equality in every cell"),
    Option(name="equal_nan", kind="flag", commands=RUN, plugin=True,
           help="a NaN matches a NaN at the same index (default: every NaN is a mismatch)"),
    Option(name="threads", type=int, default=1, metavar="N", commands=(*SELECTING, "env", "explain"), plugin=True,
           help="torch intra-op threads, pinned because they change bits (default: 1)"),
    Option(name="max_memory", metavar="SIZE", commands=("list", *SELECTING, "prune"), plugin=True,
           help="refuse a config whose estimated memory need is above SIZE (e.g. 4G, 512M; default: 4G)"),
    Option(name="jobs", metavar="N", commands=PROBING, short="-j",
           help="spread the cells over N worker processes (or auto: one per CPU); the report is the same "
                "as a serial run's (default: 1; in pytest use pytest-xdist's -n)"),
    Option(name="cell_budget", metavar="SECONDS", commands=SELECTING, plugin=True,
           help="end a cell that runs longer than this as an ERROR naming the budget, any backend (default: "
                "$HARNESS_CELL_BUDGET_S, else 600)"),
    Option(name="no_cache", kind="flag", commands=EXPORTING,
           help="neither read nor write the export cache: export every model afresh"),
    Option(name="cache_dir", type=Path, metavar="DIR", commands=EXPORTING,
           help="the export cache (default: $HARNESS_CACHE_DIR, else the user cache directory, e.g. "
                "~/.cache/harness/exports)"),
    Option(name="label", metavar="NAME", commands=RUN,
           help="name of this environment in merged reports (default: machine, torch and onnxruntime "
                "versions, thread count, e.g. x86_64-torch2.13.0-ort1.32.0-t1)"),
    Option(name="verbose", kind="flag", commands=(*RUN, "explain"), short="-v",
           help="the whole report: the config x backend table, every failing cell's details, every unsupported "
                "cell, upstream finding and environment difference in full"),
    Option(name="table", kind="flag", commands=RUN,
           help="also print the config x backend table (folded to the terminal's width; always in the HTML, "
                "Markdown and JSON reports)"),
    Option(name="quiet", kind="flag", commands=RUN, help="no progress bar (there is none off a TTY anyway)"),
    Option(name="probes", kind="flag", commands=PROBING, help="also run the determinism probes (see `harness probe`)"),
    Option(name="repeats", type=int, default=5, metavar="N", commands=("probe", *PROBING),
           help="runs in one process for the repeat probe (default: 5)"),
    Option(name="no_fresh_process", kind="flag", commands=("probe", *PROBING),
           help="skip the probe that reruns everything in two new interpreters"),
    Option(name="strict_settings", kind="flag", commands=("probe", *PROBING),
           help="fail when a pinned setting (threads, ORT optimisation, deterministic mode) changes bits"),
    Option(name="isa", kind="flag", commands=("probe",),
           help="instead: CPU portability, each cell in fresh processes under ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA "
                "and MKL_CBWR settings against a baseline; bits moved (ulps) and the golden's verdict under each "
                "(docs/portability.md)"),
    # report files
    Option(name="json", type=Path, metavar="PATH", commands=(*RUN, "probe", "merge", "explain"),
           help="also write the report as JSON (validated against its schema)"),
    Option(name="junit", type=Path, metavar="PATH", commands=RUN, help="also write JUnit XML (one case per cell)"),
    Option(name="markdown", type=Path, metavar="PATH", commands=(*RUN, "merge", "atlas"),
           help="also write a Markdown summary (appended to $GITHUB_STEP_SUMMARY when set)"),
    Option(name="html", type=Path, metavar="PATH", commands=(*RUN, "merge", "atlas", "explain"),
           help="also write a self-contained HTML report"),
    Option(name="not_replayed", kind="append", metavar="RELEASE: WHY", commands=("atlas",),
           help="a release that could not be installed or replayed, listed in the atlas (repeatable; "
                "tools/atlas.py passes it)"),
    Option(name="list_backends", flag_name="backends", kind="flag", commands=("list",),
           help="list the backends instead: availability here, families, and known limitations over the suite"),
    Option(name="print_json", flag_name="json", kind="flag", commands=("show", "env"),
           help="print JSON instead of text"),
    # the golden life cycle
    Option(name="stored", kind="flag", commands=("explain",),
           help="localise the artifact stored beside the golden (as replay runs it) instead of a fresh export"),
    Option(name="force", kind="flag", commands=("record",),
           help="overwrite existing goldens (say so when the old one was corrupt) and print what changed"),
    Option(name="reference_only", kind="flag", commands=("record",), help="record no backend fingerprints"),
    Option(name="allow_nonfinite", kind="flag", commands=("record",), plugin=True,
           help="record goldens that hold NaN or inf (refused by default)"),
    Option(name="yes", kind="flag", commands=("prune",), help="delete the stale goldens (default: only list them)"),
    Option(name="review_format", flag_name="format", type=choice("text", "markdown"), default="text",
           metavar="text|markdown", commands=("review",),
           help="text for a terminal, or markdown for a pull-request comment or $GITHUB_STEP_SUMMARY (default: text)"),
    Option(name="output", type=Path, metavar="FILE", commands=("review",),
           help="write the review to FILE instead of printing it"),
    Option(name="fail_on_change", kind="flag", commands=("review",),
           help="exit 1 when any golden or file changed (default: exit 0 whenever the review ran)"),
    # pytest only
    Option(name="update", kind="flag", plugin=True,
           help="record goldens that are missing (suite goldens and rnn_golden fixture goldens)"),
    Option(name="force_update", kind="flag", plugin=True, help="with --harness-update: also rewrite existing goldens"),
    Option(name="strict", kind="flag", plugin=True, help="fail the session when stale goldens exist"),
    Option(name="fixture_golden_dir", type=Path, metavar="DIR", plugin=True,
           help="directory of the rnn_golden fixture's goldens (default: rnn_golden/ next to each test file, "
                "or the ini option harness_fixture_golden_dir)"),
)


def add_cli_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add every option the table gives this subcommand, in table order."""
    for option in OPTIONS:
        if command in option.commands:
            parser.add_argument(*filter(None, (option.short, option.flag)), **option.argparse_kwargs())


def plugin_options() -> Iterable[Option]:
    return (option for option in OPTIONS if option.plugin)


def plugin_path_flags() -> tuple[str, ...]:
    """The plugin's options that take a path: they must be written --flag=PATH (see the plugin)."""
    return tuple(option.plugin_flag for option in plugin_options() if option.type is Path)


def split_names(values: Iterable[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated names as one tuple: ("a,b", "c") -> ("a", "b", "c")."""
    return tuple(name.strip() for value in values or () for name in value.split(",") if name.strip())
