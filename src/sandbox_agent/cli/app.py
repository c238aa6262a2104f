"""The root Typer app and what every command shares: store option, error exit, JSON output."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from sandbox_agent.store import StoreError, default_store_url

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

app = typer.Typer(
    name="sandbox-agent",
    help="Run coding agents in a sandbox; keep, replay and inspect their sessions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# Rich is imported on first use: the server command prints through it only to fail, and a
# long-running ``sandbox-agent server`` should not keep it in memory (about 2 MB).
@functools.cache
def console() -> Console:
    """The console of stdout."""
    from rich.console import Console

    return Console()


@functools.cache
def err_console() -> Console:
    """The console of stderr."""
    from rich.console import Console

    return Console(stderr=True)


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store URL (default: $SANDBOX_AGENT_STORE, then SQLite in the data dir).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def store_url(value: str | None) -> str:
    return value or default_store_url()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line reason to stderr and exit non-zero."""
    from rich.markup import escape

    # The message is plain text: no markup, no emoji codes (``acp:gemini:`` is not one).
    err_console().print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False
    )
    raise typer.Exit(code)


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; turn a store error into a one-line message and exit code 1."""
    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except StoreError as exc:
        fail(str(exc))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
