"""``sandbox-agent db upgrade URL`` / ``db current URL``: the store's schema migrations;
``db rekey``: its sealed payloads sealed again (``store/rekey.py``); ``db upcast``: old schema
versions rewritten (``store/upcast.py``)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from sandbox_agent.cli.app import (
    JsonOption,
    StoreOption,
    app,
    console,
    group,
    print_json,
    run,
    store_url,
)

db_app = group("Database schema migrations of a SQL store; rekey of sealed payloads.")
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


@db_app.command("rekey")
def rekey_command(
    store: StoreOption = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Seal with this key id of the keyring (default: the active)."),
    ] = None,
    decrypt: Annotated[
        bool, typer.Option("--decrypt", help="Store payloads unencrypted (compressed if asked).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Seal every stored payload and snapshot again as the store URL's options say
    (?compress=zstd&keys=env:NAME): after a new key is added, or to turn compression or
    encryption on (or, with --decrypt, off) for a store that has data."""
    from sandbox_agent.store import open_store
    from sandbox_agent.store.rekey import RekeySummary, rekey

    url = store_url(store)

    async def go() -> RekeySummary:
        async with await open_store(url, create=False) as opened:
            return await rekey(opened, to=to, decrypt=decrypt)

    summary = run(go)
    if json_output:
        print_json(dataclasses.asdict(summary))
        return
    console().print(
        f"rekeyed {summary.sessions} session(s) to {summary.target}: "
        f"{summary.events_rewritten} event(s) and {summary.snapshots_rewritten} snapshot(s) "
        f"written again, {summary.events_kept} event(s) and {summary.snapshots_kept} "
        "snapshot(s) already so",
        highlight=False,
        soft_wrap=True,
    )


@db_app.command("upcast")
def upcast_command(
    store: StoreOption = None,
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            metavar="MODULE",
            help="Import this module first (one that registers your upcasters); repeatable.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Rewrite the events stored at an old schema version in their current shape (reads
    upcast them anyway: this is only ever needed to retire old upcasters)."""
    import importlib

    from sandbox_agent.store import open_store
    from sandbox_agent.store.upcast import UpcastSummary, upcast_store

    url = store_url(store)
    for module in imports or []:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise typer.BadParameter(
                f"cannot import {module!r}: {exc}", param_hint="--import"
            ) from exc

    async def go() -> UpcastSummary:
        async with await open_store(url, create=False) as opened:
            return await upcast_store(opened)

    summary = run(go)
    if json_output:
        print_json(dataclasses.asdict(summary))
        return
    kinds = ", ".join(f"{t} {n}" for t, n in sorted(summary.by_type.items())) or "none"
    console().print(
        f"upcast {summary.sessions} session(s): {summary.events_rewritten} event(s) rewritten "
        f"({kinds}), {summary.events_current} already current",
        highlight=False,
        soft_wrap=True,
    )
