"""The ``sandbox-agent`` command line: thin commands over the library's functions."""

from __future__ import annotations

from sandbox_agent.cli.app import app
from sandbox_agent.cli import db, schema, sessions  # noqa: F401  (registers the commands)


def main() -> None:
    app()


__all__ = ["app", "main"]
