"""The `harness` command line: subcommands built from the options table, errors as one line.

Exit 0 ok, 1 drift, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.cli.commands import COMMANDS
from harness.errors import EXIT_OK, HarnessError
from harness.options import add_cli_options

SUBCOMMANDS = {
    "list": "the suite's configurations, one per line",
    "run": "run configs x backends and compare them to the goldens",
    "check": "cross-backend validation without goldens: every backend vs eager computed now",
    "probe": "determinism probes for every config x backend (no goldens needed)",
    "record": "write goldens (eager CPU, plus every backend's fingerprint and artifact) for configs that have none",
    "replay": "run the artifacts stored beside the goldens under today's runtimes (ONNX ones without torch)",
    "bundle": "write one config's stored ONNX model, inputs and golden for Polygraphy and ONNX test runners",
    "show": "a golden's tensors, shapes and provenance, from its manifest alone",
    "prune": "list (or, with --yes, delete) goldens that no config of the suite uses",
    "review": "what changed in the goldens since a git ref (or against a second directory): tensors, tolerances, "
              "environment, fingerprints, artifacts and files, as text or Markdown for a reviewer",
    "merge": "combine JSON reports from shards and environments",
    "atlas": "a release x cell matrix of replay reports under several onnxruntime releases (docs/atlas.md)",
    "env": "the environment fingerprint stored in goldens and reports",
    "explain": "where one cell's numbers part from the float64 reference: layer, direction and time step, the error "
               "each step makes on its own against the error it carries in (docs/localisation.md)",
}
EPILOG = ("Exit codes: 0 everything matched; 1 drift, a shape or invariant failure, nondeterminism "
          "(a run or a probe), a failed backend, (merge) a missing shard, (atlas) a failing cell in the newest "
          "release, or (review --fail-on-change) a golden "
          "change; 2 bad usage or bad input "
          "(unknown config or backend, malformed suite, a missing golden directory, a missing, corrupt or "
          "unreadable golden or report, an unavailable backend asked for by name, a golden that would be "
          "overwritten without --force). A run with missing goldens still judges every other cell, "
          "prints the table, and exits 2.")


REVIEW_BASE_HELP = ("a second golden directory, or a git ref whose golden directory is read without a checkout "
                    "(the other side is --golden-dir in the working tree); 'REF...' means the merge-base of REF "
                    "and HEAD, as a pull request's diff shows (e.g. origin/main...); default: the merge-base with "
                    "the branch's upstream, or HEAD when there is none (then only uncommitted changes show)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Reproducibility harness for seeded RNNs: runs a suite on several backends against golden tensors.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(**{f"_parser_{name}": sub})
        if name == "show":
            sub.add_argument("golden", metavar="ID|MANIFEST",
                             help="a config id or fixture golden name (looked up in --golden-dir), "
                                  "or the path of a golden's .json manifest")
        if name == "explain":
            sub.add_argument("config_id", metavar="ID", help="the config to localise (--backend names the backend)")
        if name == "bundle":
            sub.add_argument("config_id", metavar="ID", help="the config whose golden holds the artifact")
            sub.add_argument("out", type=Path, metavar="OUT", help="directory to create (must not exist, or be empty)")
        if name == "review":
            sub.add_argument("base", nargs="?", metavar="BASE", help=REVIEW_BASE_HELP)
        if name in ("merge", "atlas"):
            sub.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
        add_cli_options(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `harness` and `python -m harness`; returns the exit code."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # said by the subcommand's own parser, so its usage line is the one shown
        getattr(args, f"_parser_{args.command}").error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return COMMANDS[args.command](vars(args))
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
