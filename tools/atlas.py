"""The drift atlas across onnxruntime releases (docs/atlas.md): one cached torch-free venv per release,
`harness replay` of the stored artifacts in each, one JSON report per release, then `harness atlas`.

    python tools/atlas.py                              # every release installable here, oldest supported to newest
    python tools/atlas.py --releases 1.20.1,1.21.0     # a kept list (or $HARNESS_ATLAS_RELEASES)
    python tools/atlas.py --suite S --golden-dir G --out DIR

`nox -s atlas` and `tox -e atlas` call this script; it needs only the standard library and Python 3.11.
Each venv is the README's torch-free install with constraints.txt's onnxruntime pin swapped for the release,
so the release is the only thing that differs between columns. Venvs live under .atlas/venvs/ (reused while
their install spec is unchanged; the harness is installed editable, so code changes need no rebuild).
A release that fails to install is listed in the atlas, not fatal. Exit 0 when the atlas was built, else 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_FREE = ("jsonschema", "filelock", "platformdirs", "tqdm", "rich", "numpy", "onnx")  # README, without torch
DEFAULT_BACKENDS = "onnxruntime-legacy,onnxruntime-dynamo"


def release_key(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", release))


def oldest_supported() -> str:
    """The floor pyproject.toml declares for onnxruntime (onnxruntime>=X)."""
    found = re.search(r'"onnxruntime>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return found.group(1) if found else "0"


def available_releases() -> list[str]:
    """Every onnxruntime release pip can install on this interpreter, from the supported floor, oldest first."""
    listing = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "onnxruntime"],
                             capture_output=True, text=True, check=False)
    found = re.search(r"Available versions: (.*)", listing.stdout)
    if not found:
        raise SystemExit(f"atlas: `pip index versions onnxruntime` listed nothing ({listing.stderr.strip()[-200:]}); "
                         "give the releases with --releases")
    floor = release_key(oldest_supported())
    releases = [release.strip() for release in found.group(1).split(",")]
    return sorted((r for r in releases if release_key(r) >= floor), key=release_key)


def atlas_constraints(home: Path) -> Path:
    """constraints.txt without its onnxruntime pin (nor torch, never installed): every other pin as in CI."""
    lines = []
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if re.match(r"\s*(onnxruntime|torch)\s*==", line):
            continue
        lines.append(line.replace("-c constraints/", f"-c {ROOT / 'constraints'}/"))
    path = home / "constraints-atlas.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ensure_venv(release: str, home: Path, constraints: Path, log: Path) -> str:
    """The release's venv, built once; '' when ready, else why it could not be installed (one line)."""
    venv = home / "venvs" / f"ort-{release}"
    spec = hashlib.sha256(f"{release}\n{sys.version}\n{constraints.read_text()}".encode()).hexdigest()
    marker = venv / "atlas-spec.txt"
    if marker.exists() and marker.read_text() == spec:
        return ""
    shutil.rmtree(venv, ignore_errors=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [*pip, "-c", str(constraints), *TORCH_FREE, f"onnxruntime=={release}"],
             [*pip, "--no-deps", "-e", str(ROOT)]]
    # tox's PIP_CONSTRAINT (constraints.txt) would pin onnxruntime==1.32.0 against the release asked for
    environment = {name: value for name, value in os.environ.items() if name != "PIP_CONSTRAINT"}
    with log.open("a", encoding="utf-8") as out:
        for step in steps:
            done = subprocess.run(step, stdout=out, stderr=subprocess.PIPE, text=True, check=False, env=environment)
            out.write(done.stderr)
            if done.returncode:
                shutil.rmtree(venv, ignore_errors=True)
                errors = [line for line in done.stderr.splitlines() if line.strip()]
                return (errors[-1] if errors else f"exit {done.returncode}")[:300]
    marker.write_text(spec)
    return ""


def replay(release: str, home: Path, out: Path, options: argparse.Namespace) -> str:
    """`harness replay` in the release's venv, writing out/ort-<release>.json; '' when the report was written."""
    report = out / f"ort-{release}.json"
    report.unlink(missing_ok=True)
    command = [str(home / "venvs" / f"ort-{release}" / "bin" / "harness"), "replay", "--quiet",
               "--backend", options.backend, "--label", f"ort-{release}", "--json", str(report)]
    command += [flag for flag, value in (("--suite", options.suite), ("--golden-dir", options.golden_dir))
                for flag in (flag, str(value)) if value is not None]
    with (out / f"ort-{release}.log").open("w", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                              env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    if report.exists():
        return ""
    tail = (out / f"ort-{release}.log").read_text(encoding="utf-8").strip().splitlines()
    return f"replay exit {done.returncode}: {tail[-1] if tail else 'no output'}"[:300]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", default=os.environ.get("HARNESS_ATLAS_RELEASES", ""),
                        help="comma-separated onnxruntime releases (default: $HARNESS_ATLAS_RELEASES, else every "
                             "release pip can install here from pyproject's floor to the newest)")
    parser.add_argument("--suite", type=Path, help="suite TOML (default: the packaged default suite)")
    parser.add_argument("--golden-dir", type=Path, help="golden directory (default: golden/ of this checkout)")
    parser.add_argument("--backend", default=DEFAULT_BACKENDS, help=f"replayed backends (default: {DEFAULT_BACKENDS})")
    parser.add_argument("--out", type=Path, default=ROOT / ".atlas" / "reports",
                        help="where the per-release JSON reports and atlas.md/atlas.html go (default: .atlas/reports)")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("HARNESS_ATLAS_HOME", ROOT / ".atlas")),
                        help="the cache of per-release venvs (default: $HARNESS_ATLAS_HOME, else .atlas/)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    options = parse(argv)
    started = time.perf_counter()
    releases = [r.strip() for r in options.releases.split(",") if r.strip()] or available_releases()
    options.home.mkdir(parents=True, exist_ok=True)
    options.out.mkdir(parents=True, exist_ok=True)
    for stale in options.out.glob("ort-*.json"):  # a report left from another release list must not join
        stale.unlink()
    constraints = atlas_constraints(options.home)
    reports: list[Path] = []
    failed: dict[str, str] = {}
    timing: dict[str, dict[str, float]] = {}
    for release in sorted(releases, key=release_key):
        begun = time.perf_counter()
        problem = ensure_venv(release, options.home, constraints, options.home / f"install-{release}.log")
        installed = time.perf_counter()
        problem = problem or replay(release, options.home, options.out, options)
        replayed = time.perf_counter()
        timing[release] = {"install_s": round(installed - begun, 1), "replay_s": round(replayed - installed, 1)}
        print(f"atlas: onnxruntime {release}: {problem or 'replayed'} "
              f"(venv {timing[release]['install_s']} s, replay {timing[release]['replay_s']} s)", flush=True)
        if problem:
            failed[release] = problem
        else:
            reports.append(options.out / f"ort-{release}.json")
    (options.out / "not-replayed.json").write_text(json.dumps(failed, indent=2) + "\n", encoding="utf-8")
    if not reports:
        print("atlas: no release could be replayed", file=sys.stderr)
        return 2
    harness = options.home / "venvs" / f"ort-{reports[-1].stem.removeprefix('ort-')}" / "bin" / "harness"
    command = [str(harness), "atlas", *map(str, reports), "--markdown", str(options.out / "atlas.md"),
               "--html", str(options.out / "atlas.html")]
    command += [part for release, why in failed.items() for part in ("--not-replayed", f"{release}: {why}")]
    done = subprocess.run(command, check=False, env={**os.environ, "GITHUB_STEP_SUMMARY": ""})
    total = round(time.perf_counter() - started, 1)
    (options.out / "timing.json").write_text(json.dumps({"total_s": total, "releases": timing}, indent=2) + "\n",
                                             encoding="utf-8")
    print(f"atlas: {len(reports)} release(s) replayed, {len(failed)} not (installed or replayed); {total} s in all "
          f"(timings in {options.out / 'timing.json'})")
    return 0 if done.returncode in (0, 1) else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
