"""The ``sandbox-agent`` command line: thin commands over the library's functions."""

from __future__ import annotations

from sandbox_agent.cli import api, daemon, db, replay, schema, server, sessions, transfer  # noqa: F401  (registers the commands)
from sandbox_agent.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
