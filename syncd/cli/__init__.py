"""The ``syncd`` command: one module per command group, parsed in `main`."""

from syncd.cli.main import main

__all__ = ["main"]
