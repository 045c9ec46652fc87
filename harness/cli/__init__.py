"""The `harness` command line: a thin shell over the session core."""

from harness.cli.parser import main

__all__ = ["main"]
