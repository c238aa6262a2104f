"""The root Typer app and what every command shares: store option, error exit, JSON output."""

from __future__ import annotations

import copy
import functools
import importlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup, TyperOption

# Nothing heavy at the top of any CLI module (the store, pydantic, httpx, rich): ``--help`` and
# the commands that do not need them stay fast (``tests/test_cli_startup.py``).
if TYPE_CHECKING:
    from rich.console import Console

    # The types Typer's vendored Click gives its hooks.
    from typer._click import Command, Context, HelpFormatter

T = TypeVar("T")


class Group(TyperGroup):
    """A command group whose ``--help`` flag defaults to False, not None.

    Typer coerces a parameter's value through a pydantic ``TypeAdapter`` unless it is already a
    bool; a group's unused help flag was None, so ``sandbox-agent replay --help`` imported
    pydantic (about 0.2 s) to coerce the root group's None. False is what the flag means anyway.
    """

    def get_help_option(self, ctx: Context) -> TyperOption | None:
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


#: The module that registers each top-level command, in the order ``--help`` lists them.
COMMAND_MODULES = {
    "install-agent": "agents",
    "server": "server",
    "replay": "replay",
    "schema": "schema",
    "export": "transfer",
    "import": "transfer",
    "consumers": "consumers",
    "fork": "fork",
    "inspect": "inspect",
    "publish": "consumers",  # a group, registered with "consumers" before the groups below
    "api": "api",
    "credentials": "credentials",
    "daemon": "daemon",
    "db": "db",
    "sessions": "sessions",
}


def load_commands(names: Iterable[str] | None = None) -> None:
    """Import the modules of the commands ``names`` (default: all), which registers them on
    ``app``."""
    wanted = COMMAND_MODULES.values() if names is None else map(COMMAND_MODULES.get, names)
    for module in dict.fromkeys(wanted):
        if module:
            importlib.import_module(f"{__package__}.{module}")


class RootGroup(Group):
    """The ``sandbox-agent`` group: it imports a command's module, and builds its command, when
    that command is asked for (Click's lazily loaded subcommands).

    Typer builds every parameter of every command from its signature (about 50 ms for the 30 or
    so of them) and each module imports its own share, all for nothing when one command runs or
    prints its help. ``--help`` lists them from their help alone; an unknown name (for the
    suggestion) loads them all.
    """

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands:
            self._load([cmd_name] if cmd_name in COMMAND_MODULES else None)
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: Context) -> list[str]:
        if any(name not in self.commands for name in COMMAND_MODULES):
            self._load(None)
        return super().list_commands(ctx)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        # The listing shows names and help only: Typer builds it from the commands as registered
        # with stand-ins for their parameters (those are most of a command's build, 50 ms).
        load_commands()
        listing = typer.main.get_command(_without_parameters(app))
        assert isinstance(listing, TyperGroup)
        listing.format_commands(ctx, formatter)

    def _load(self, names: list[str] | None) -> None:
        load_commands(names)
        # What the modules registered on ``app`` so far, built as Typer builds it.
        built = typer.main.get_command(app)
        assert isinstance(built, TyperGroup)
        self.commands = built.commands


def _without_parameters(typer_app: typer.Typer) -> typer.Typer:
    """A copy of ``typer_app`` whose commands take no parameters and whose groups hold no
    commands: built by Typer, it has the same names, help, short help, hidden and deprecated
    flags, cheaply (a test holds its listing to the full one)."""

    def stub(callback: Callable[..., Any] | None) -> Callable[[], None] | None:
        if callback is None:
            return None

        def command() -> None:
            pass

        # Typer names a command and finds its help from these two (not ``wraps``: Typer would
        # follow ``__wrapped__`` to the parameters).
        command.__name__, command.__doc__ = callback.__name__, callback.__doc__
        return command

    shallow = copy.copy(typer_app)
    shallow.info = copy.copy(typer_app.info)
    shallow.info.cls = TyperGroup  # a plain group: what it lists is what it holds
    shallow.registered_commands = []
    for info in typer_app.registered_commands:
        info = copy.copy(info)
        info.callback = stub(info.callback)
        shallow.registered_commands.append(info)
    shallow.registered_groups = []
    for group_info in typer_app.registered_groups:
        group_info = copy.copy(group_info)
        if group_info.typer_instance is not None:
            empty = copy.copy(group_info.typer_instance)
            empty.registered_commands, empty.registered_groups = [], []
            group_info.typer_instance = empty
        shallow.registered_groups.append(group_info)
    return shallow


# Plain help and usage errors, not Rich's: Typer's Rich help loads Rich's Markdown and syntax
# highlighting (Pygments), about 0.2 s of every ``--help`` (the budget is 0.3 s in all).
app = typer.Typer(
    name="sandbox-agent",
    help="Run coding agents in a sandbox; keep, replay and inspect their sessions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    cls=RootGroup,
)


# A group even while one command's module is loaded: Typer makes a lone command the root.
@app.callback()
def _root() -> None:
    pass


def group(help: str) -> typer.Typer:
    """A command group (``sandbox-agent <group> <command>``), with plain help as ``app``."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, cls=Group)


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
