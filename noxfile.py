"""nox sessions mirroring tox.ini; every install uses the pinned constraints."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "golden", "lint"]
nox.options.default_venv_backend = "venv"
CONSTRAINTS = ("-c", "constraints.txt")
BASE_CONSTRAINTS = ("-c", "constraints/base.txt")
ORT = {"1.19": "onnxruntime==1.19.2", "1.32": "onnxruntime==1.32.0"}
NUMPY = {"1": ("numpy==1.26.4", "ml_dtypes==0.5.4"), "2": ("numpy==2.4.6", "ml_dtypes==0.6.0")}
TORCH = {"2.13": "torch==2.13.0", "2.14": "torch==2.14.1"}  # 2.14.1 is a multi-GB CUDA build here


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The test suite."""
    session.install(*CONSTRAINTS, "-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def golden(session: nox.Session) -> None:
    """The default suite against the committed goldens (the same as `tox -e golden`)."""
    session.install(*CONSTRAINTS, "-e", ".")
    session.run("harness", "run", *session.posargs)


@nox.session(python="3.11")
def run(session: nox.Session) -> None:
    """An alias of `golden`: the README's run command in a nox session."""
    golden(session)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    session.install(*CONSTRAINTS, "-e", ".[test,lint]")  # mypy reads the plugin's pytest types
    session.run("ruff", "check", "harness", "tests", "tools", "noxfile.py")
    session.run("mypy", "harness", "tools")


@nox.session(python="3.11")
def mutation(session: nox.Session) -> None:
    """Mutation testing of the judging core (docs/mutation.md): mutmut, then the score; fails below 95%."""
    session.install(*CONSTRAINTS, "-e", ".[test,mutation]")
    session.run("python", "tools/mutation_score.py", "--run", "--fail-under", "95", *session.posargs)


@nox.session(python="3.11")
@nox.parametrize("numpy", list(NUMPY))
@nox.parametrize("ort", list(ORT))
@nox.parametrize("torch", ["2.13"])  # add "2.14" on machines that have that wheel
def matrix(session: nox.Session, torch: str, ort: str, numpy: str) -> None:
    """The default suite against the goldens under other releases.

    nox -s "matrix(torch='2.13', ort='1.19', numpy='2')"
    """
    session.install(*BASE_CONSTRAINTS, TORCH[torch], ORT[ort], *NUMPY[numpy], "-e", ".")
    session.run("harness", "run", "--label", f"torch{torch}-ort{ort}-numpy{numpy}", *session.posargs)


@nox.session(python="3.11")
def atlas(session: nox.Session) -> None:
    """The drift atlas across onnxruntime releases (docs/atlas.md): a cached torch-free venv per release under
    .atlas/, a replay report per release, then `harness atlas`. Options after `--` go to tools/atlas.py:

    nox -s atlas -- --releases 1.20.1,1.21.0 --suite S --golden-dir G --out DIR
    """
    session.run("python", "tools/atlas.py", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (mkdocs.yml): a broken link or a page missing from the nav fails."""
    session.install(*CONSTRAINTS, "-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", f"{session.create_tmp()}/site")
