"""``sandbox-agent db upgrade URL`` / ``db current URL``: the store's schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from sandbox_agent.cli.app import JsonOption, app, console, group, print_json, run

db_app = group("Database schema migrations of a SQL store.")
app.add_typer(db_app, name="db")

UrlArgument = Annotated[str, typer.Argument(help="Store URL (sqlite:///... or postgresql://...).")]


@db_app.command("upgrade")
def upgrade_command(url: UrlArgument, json_output: JsonOption = False) -> None:
    """Apply every pending migration (safe to run any number of times)."""
    from sandbox_agent.store.url import database_status

    current, head = run(lambda: database_status(url, upgrade=True))
    if json_output:
        print_json({"current": current, "head": head})
    else:
        console().print(f"database at revision [bold]{current}[/] (head {head})")


@db_app.command("current")
def current_command(url: UrlArgument, json_output: JsonOption = False) -> None:
    """Show the database's revision and whether migrations are pending."""
    from sandbox_agent.store.url import database_status

    current, head = run(lambda: database_status(url, upgrade=False))
    if json_output:
        print_json({"current": current, "head": head, "pending": current != head})
    elif current == head:
        console().print(f"database at revision [bold]{current}[/] (head: up to date)")
    else:
        console().print(
            f"database at revision [bold]{current or 'none'}[/], head is {head}: "
            "run `sandbox-agent db upgrade URL`"
        )
