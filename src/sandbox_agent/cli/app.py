"""The root Typer app and what every command shares: store option, error exit, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

# Nothing heavy at the top of any CLI module (the store, pydantic, httpx, rich): ``--help`` and
# the commands that do not need them stay fast (``tests/test_cli_startup.py``).
if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

# Plain help and usage errors, not Rich's: Typer's Rich help loads Rich's Markdown and syntax
# highlighting (Pygments), about 0.2 s of every ``--help`` (the budget is 0.3 s in all).
app = typer.Typer(
    name="sandbox-agent",
    help="Run coding agents in a sandbox; keep, replay and inspect their sessions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def group(help: str) -> typer.Typer:
    """A command group (``sandbox-agent <group> <command>``), with plain help as ``app``."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


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
    from sandbox_agent.store import default_store_url

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
    import asyncio

    from sandbox_agent.store import StoreError

    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except StoreError as exc:
        fail(str(exc))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
