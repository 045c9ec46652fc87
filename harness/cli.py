"""The `harness` command: parse, call the library, print. Exit 0 ok, 1 drift, 2 bad input."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness import __version__
from harness.config import RnnConfig
from harness.errors import EXIT_DRIFT, EXIT_OK, HarnessError
from harness.golden import GoldenStore
from harness.suite import Suite, load_suite
from harness.tolerance import BITWISE, Tolerance, TolerancePolicy

if TYPE_CHECKING:
    from harness.probes import ProbeResult
    from harness.results import RunReport

DEFAULT_BACKENDS = ("eager", "torchscript-script", "torchscript-trace", "onnxruntime-legacy", "onnxruntime-dynamo")
CUDA_BACKENDS = ("eager-cuda", "onnxruntime-legacy-cuda", "onnxruntime-dynamo-cuda")


def default_golden_dir() -> Path:
    """The repository's golden/ when running from a checkout, else ./golden."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists() and (checkout / "golden").is_dir():
        return checkout / "golden"
    return Path("golden")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Reproducibility harness for seeded RNNs: runs a suite on several backends against golden tensors.",
        epilog="Exit codes: 0 everything matched; 1 drift, nondeterminism or a failed backend; "
        "2 bad usage or bad input (unknown config, malformed suite, missing or corrupt golden).",
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


def _suite(args: argparse.Namespace) -> Suite:
    return load_suite(args.suite)


def _store(args: argparse.Namespace) -> GoldenStore:
    return GoldenStore(args.golden_dir or default_golden_dir())


def cmd_list(args: argparse.Namespace) -> int:
    suite = _suite(args)
    reference = RnnConfig().to_dict()
    width = max(len(config_id) for config_id in suite.ids())
    for config in suite.configs:
        fields = ", ".join(f"{key}={value}" for key, value in config.to_dict().items()
                           if value != reference[key] or key == "cell")
        print(f"{config.id.ljust(width)}  {config.content_hash[:12]}  {fields}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, *, live_reference: bool = False) -> int:
    from harness.backends import expand_backend_names
    from harness.engine import RunOptions, run_suite
    from harness.report import report_lines
    from harness.shard import parse_shard, select_shard

    options = RunOptions(
        backends=tuple(args.backend or _default_backends()),
        include_slow=args.all,
        policy=_tolerance_policy(args),
        threads=_threads(args),
        require_available=bool(args.backend),
        live_reference=live_reference,
    )
    suite = _suite(args)
    store = GoldenStore(default_golden_dir()) if live_reference else _store(args)
    configs = suite.select(args.config)
    shard = ""
    if args.shard:
        index, count = parse_shard(args.shard)
        configs, shard = select_shard(configs, index, count), f"{index}/{count}"
    with progress_bar(len(configs) * len(expand_backend_names(options.backends)), quiet=args.quiet) as advance:
        report = run_suite(configs, store, options, suite_source=suite.source, on_cell=advance)
    report = dataclasses.replace(report, label=args.label, shard=shard)
    print("\n".join(report_lines(report)))
    probes = _run_probes(args, configs) if args.probes else ()
    _write_run_files(args, report, probes)
    return max(report.exit_code, EXIT_DRIFT if any(probe.failing for probe in probes) else EXIT_OK)


def _write_run_files(args: argparse.Namespace, report: RunReport, probes: tuple[ProbeResult, ...]) -> None:
    from harness.report_files import junit_xml, run_markdown, write_markdown
    from harness.report_html import run_html
    from harness.report_json import write_json

    written = []
    if args.json:
        write_json(report, args.json, probes=probes)
        written.append(str(args.json))
    if args.junit:
        args.junit.write_bytes(junit_xml(report))
        written.append(str(args.junit))
    if args.html:
        args.html.write_text(run_html(report), encoding="utf-8")
        written.append(str(args.html))
    written += write_markdown(run_markdown(report), args.markdown) if args.markdown or _step_summary() else []
    if written:
        print(f"written: {', '.join(written)}")


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.merge import merge_lines, merge_reports, merged_document
    from harness.report_files import merge_markdown, write_markdown
    from harness.report_html import merge_html

    merged = merge_reports(args.reports)
    print("\n".join(merge_lines(merged)))
    written = []
    if args.json:
        args.json.write_text(json.dumps(merged_document(merged), indent=2) + "\n", encoding="utf-8")
        written.append(str(args.json))
    if args.html:
        args.html.write_text(merge_html(merged), encoding="utf-8")
        written.append(str(args.html))
    written += write_markdown(merge_markdown(merged), args.markdown) if args.markdown or _step_summary() else []
    if written:
        print(f"written: {', '.join(written)}")
    return merged.exit_code


def _step_summary() -> bool:
    return bool(os.environ.get("GITHUB_STEP_SUMMARY"))


@contextlib.contextmanager
def progress_bar(total: int, *, quiet: bool) -> Iterator[Callable[[object], None]]:
    """A tqdm bar on stderr for interactive runs; a no-op off a TTY or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield lambda _cell: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="cell", file=sys.stderr, leave=False) as bar:
        yield lambda _cell: bar.update(1)


def cmd_probe(args: argparse.Namespace) -> int:
    from harness.probe_report import SCHEMA, probe_documents

    configs = _suite(args).select(args.config)
    results = _run_probes(args, configs)
    if args.json:
        document = {"schema": SCHEMA, "probes": probe_documents(results)}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"JSON probe results written to {args.json}")
    return EXIT_DRIFT if any(result.failing for result in results) else EXIT_OK


def _run_probes(args: argparse.Namespace, configs: tuple[RnnConfig, ...]) -> tuple[ProbeResult, ...]:
    from harness.probe_report import probe_lines
    from harness.probes import ProbeOptions, run_probes

    if args.repeats < 1:
        raise HarnessError(f"--repeats must be at least 1, got {args.repeats}")
    backends = tuple(args.backend or _default_backends())
    _, unavailable = _resolve(backends)
    if args.backend and unavailable:
        name, reason = next(iter(unavailable.items()))
        raise HarnessError(f"backend {name} is unavailable here: {reason}")
    options = ProbeOptions(backends=backends, repeats=args.repeats, threads=_threads(args),
                           fresh_process=not args.no_fresh_process, include_slow=args.all,
                           strict_settings=args.strict_settings)
    results = run_probes(configs, options, args.suite)
    print("\n".join(["", *probe_lines(results)]))
    return results


def _resolve(names: tuple[str, ...]) -> tuple[object, dict[str, str]]:
    from harness.backends import expand_backend_names
    from harness.engine import resolve_backends

    return resolve_backends(expand_backend_names(names))


def cmd_check(args: argparse.Namespace) -> int:
    return cmd_run(args, live_reference=True)


def cmd_record(args: argparse.Namespace) -> int:
    from harness.record import record_golden

    store = _store(args)
    configs = _suite(args).select(args.config)
    existing = [config.id for config in configs if store.exists(config.id)]
    if args.config and existing and not args.force:
        raise HarnessError(f"{store.manifest_path(existing[0])}: golden exists; pass --force to overwrite it "
                           f"(it prints what changed)")
    kept = 0
    for config in configs:
        if config.id in existing and not args.force:
            kept += 1
            continue
        fingerprinted = () if args.reference_only else tuple(args.backend or _default_backends())
        result = record_golden(config, store, force=args.force, threads=_threads(args),
                               fingerprint_backends=fingerprinted, include_slow=args.all)
        print(f"{'rewrote' if result.replaced else 'recorded'} {result.config_id} -> {result.path}")
        for change in result.changes:
            print(f"  {change}")
        if not result.replaced:
            for backend, line in result.fingerprints.items():
                print(f"  fingerprint {backend}: {line}")
    if kept:
        print(f"kept {kept} existing goldens (pass --force to rewrite them)")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from harness.show import show_document, show_lines

    store = _store(args)
    config_id = args.config_id
    _suite(args).select([config_id])  # an unknown id is an error naming the suite
    golden = store.load(config_id)
    path = str(store.manifest_path(config_id))
    if args.json:
        print(json.dumps(show_document(golden, path), indent=2))
    else:
        print("\n".join(show_lines(golden, path)))
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    from harness.engine import environment_now

    environment = environment_now(_threads(args))
    if args.json:
        print(json.dumps(environment.to_dict(), indent=2))
        return EXIT_OK
    for key, value in environment.to_dict().items():
        if isinstance(value, dict):
            print(f"{key}:")
            for name, version in value.items():
                print(f"  {name}: {version}")
        else:
            print(f"{key}: {' '.join(value) if isinstance(value, list) else value}")
    return EXIT_OK


def _default_backends() -> tuple[str, ...]:
    import torch

    return DEFAULT_BACKENDS + (CUDA_BACKENDS if torch.cuda.is_available() else ())


def _tolerance_policy(args: argparse.Namespace) -> TolerancePolicy:
    if (args.atol is None) != (args.rtol is None):
        raise HarnessError("--atol and --rtol go together: give both or neither")
    if args.bitwise and args.atol is not None:
        raise HarnessError("--bitwise excludes --atol/--rtol")
    if args.bitwise:
        return TolerancePolicy(override=BITWISE)
    if args.atol is not None:
        if args.atol < 0 or args.rtol < 0:
            raise HarnessError("--atol and --rtol must be non-negative")
        return TolerancePolicy(override=Tolerance(atol=args.atol, rtol=args.rtol))
    return TolerancePolicy()


def _threads(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise HarnessError(f"--threads must be at least 1, got {args.threads}")
    return int(args.threads)


COMMANDS = {"list": cmd_list, "run": cmd_run, "check": cmd_check, "probe": cmd_probe, "record": cmd_record,
            "show": cmd_show, "merge": cmd_merge, "env": cmd_env}

if __name__ == "__main__":
    sys.exit(main())
