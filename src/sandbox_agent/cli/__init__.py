"""The ``sandbox-agent`` command line: thin commands over the library's functions."""

from __future__ import annotations

from sandbox_agent.cli import (  # noqa: F401  (registers the commands)
    agents,
    api,
    credentials,
    daemon,
    db,
    replay,
    schema,
    server,
    sessions,
    transfer,
)
from sandbox_agent.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
