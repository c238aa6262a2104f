"""The ``sandbox-agent`` command line: thin commands over the library's functions.

Each command lives in a module of this package; ``app`` imports a command's module when the
command is asked for (``app.COMMAND_MODULES``), so one command does not pay for the others.
"""

from __future__ import annotations

from sandbox_agent.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
