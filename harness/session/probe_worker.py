"""`python -m harness.session.probe_worker`: the fresh interpreter of the fresh-process probe.

Computes every selected config x backend once, through a Session as every entry point does, and
prints one JSON line each: {"config": id, "backend": name, "sha256": hex or "error: ..."}.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from harness.backends.capture import first_line
from harness.backends.lifetime import die_with_parent
from harness.session.core import Session
from harness.session.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.session.probe_worker")
    parser.add_argument("--parent", type=int, default=os.getppid(),
                        help="the probing process's pid (default: this process's parent now)")
    parser.add_argument("--suite", type=Path)
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--backend", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args(argv)
    # A killed probe must not leave its fresh processes computing; given --parent, a parent killed while this
    # process was still starting is noticed too.
    die_with_parent(args.parent)
    session = Session(Settings(suite=args.suite, configs=tuple(args.config), backends=tuple(args.backend),
                               threads=args.threads, include_slow=args.all))
    for config in session.configs:
        for name in args.backend:
            try:
                if session.backend(name).is_slow(config) and not args.all:
                    continue
                sha = session.output_sha256(config, name)
            except Exception as error:  # reported back as this cell's result
                sha = f"error: {first_line(error)}"
            print(json.dumps({"config": config.id, "backend": name, "sha256": sha}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
