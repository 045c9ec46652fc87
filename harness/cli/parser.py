"""The `harness` command: parse, call the library, print. Exit 0 ok, 1 drift, 2 bad input."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.backends import CUDA_BACKENDS, DEFAULT_BACKENDS
from harness.cli.commands import COMMANDS
from harness.errors import EXIT_OK, HarnessError
from harness.store.golden import default_golden_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Reproducibility harness for seeded RNNs: runs a suite on several backends against golden tensors.",
        epilog="Exit codes: 0 everything matched; 1 drift, a shape or invariant failure, nondeterminism "
        "(a run or a probe), a failed backend, or (merge) a missing shard; 2 bad usage or bad input "
        "(unknown config or backend, malformed suite, missing or corrupt golden or report, an unavailable "
        "backend asked for by name, a golden that would be overwritten without --force).",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="the suite's configurations, one per line")
    _add_suite_option(listing)

    run = commands.add_parser("run", help="run configs x backends and compare them to the goldens")
    _add_suite_option(run)
    _add_golden_option(run)
    _add_run_options(run)

    check = commands.add_parser(
        "check", help="cross-backend validation without goldens: every backend vs eager computed now")
    _add_suite_option(check)
    _add_run_options(check)

    probe = commands.add_parser("probe", help="determinism probes for every config x backend (no goldens needed)")
    _add_suite_option(probe)
    probe.add_argument("--config", action="append", metavar="ID", help="only this config (repeatable)")
    probe.add_argument("--backend", action="append", metavar="NAME", help="only this backend or family (repeatable)")
    probe.add_argument("--all", action="store_true", help="include cells tagged slow")
    _add_probe_options(probe)
    probe.add_argument("--json", type=Path, metavar="PATH", help="also write the probe results as JSON")
    _add_threads_option(probe)

    record = commands.add_parser("record", help="write goldens (eager CPU) for configs that have none")
    _add_suite_option(record)
    _add_golden_option(record)
    record.add_argument("--config", action="append", metavar="ID", help="only this config (repeatable)")
    record.add_argument("--force", action="store_true", help="overwrite existing goldens and print what changed")
    record.add_argument("--backend", action="append", metavar="NAME",
                        help="fingerprint only these backends (repeatable; default: every default backend)")
    record.add_argument("--reference-only", action="store_true", help="record no backend fingerprints")
    record.add_argument("--all", action="store_true", help="also fingerprint cells tagged slow")
    _add_threads_option(record)

    show = commands.add_parser("show", help="a config's golden tensors, shapes and provenance")
    show.add_argument("config_id", metavar="ID")
    _add_suite_option(show)
    _add_golden_option(show)
    show.add_argument("--json", action="store_true", help="print JSON (with every tensor value)")

    merge = commands.add_parser("merge", help="combine JSON reports from shards and environments")
    merge.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
    merge.add_argument("--json", type=Path, metavar="PATH", help="also write the merged report as JSON")
    _add_report_file_options(merge)

    env = commands.add_parser("env", help="the environment fingerprint stored in goldens and reports")
    env.add_argument("--json", action="store_true", help="print JSON")
    _add_threads_option(env)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", metavar="ID", help="only this config (repeatable)")
    parser.add_argument("--backend", action="append", metavar="NAME",
                        help=f"only this backend or family (repeatable); default: {', '.join(DEFAULT_BACKENDS)} "
                             f"plus {', '.join(CUDA_BACKENDS)} where CUDA is present")
    parser.add_argument("--all", action="store_true", help="include cells tagged slow")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON (validated)")
    _add_report_file_options(parser)
    parser.add_argument("--junit", type=Path, metavar="PATH", help="also write JUnit XML (one case per cell)")
    parser.add_argument("--shard", metavar="K/N", help="run only shard K of N (deterministic, even, disjoint)")
    parser.add_argument("--label", default="", help="name of this environment in merged reports")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (there is none off a TTY anyway)")
    parser.add_argument("--atol", type=float, help="absolute tolerance for every cell (needs --rtol)")
    parser.add_argument("--rtol", type=float, help="relative tolerance for every cell (needs --atol)")
    parser.add_argument("--bitwise", action="store_true", help="demand bitwise equality in every cell")
    parser.add_argument("--probes", action="store_true", help="also run the determinism probes (see `probe`)")
    _add_probe_options(parser)
    _add_threads_option(parser)


def _add_report_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", type=Path, metavar="PATH",
                        help="also write a Markdown summary (appended to $GITHUB_STEP_SUMMARY when set)")
    parser.add_argument("--html", type=Path, metavar="PATH", help="also write a self-contained HTML report")


def _add_probe_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5, metavar="N",
                        help="runs in one process for the repeat probe (default: 5)")
    parser.add_argument("--no-fresh-process", action="store_true",
                        help="skip the probe that reruns everything in two new interpreters")
    parser.add_argument("--strict-settings", action="store_true",
                        help="fail when a pinned setting (threads, ORT optimisation, deterministic mode) changes bits")


def _add_suite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", type=Path, metavar="FILE", help="suite TOML file (default: the packaged suite)")


def _add_golden_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--golden-dir", type=Path, metavar="DIR",
                        help=f"golden directory (default: {default_golden_dir()})")


def _add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch intra-op threads, pinned because they change bits (default: 1)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `harness` and `python -m harness`; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except HarnessError as error:
        print(f"harness: error: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `harness run | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
