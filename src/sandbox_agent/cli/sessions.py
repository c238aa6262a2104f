"""``sandbox-agent sessions list``: the sessions of any store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast, get_args

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

# The store loads when the command runs: ``--help`` does not pay for it.
if TYPE_CHECKING:
    from sandbox_agent.store import SessionRecord, SessionStatus

sessions_app = group("Sessions kept in a store.")
app.add_typer(sessions_app, name="sessions")


async def list_store_sessions(
    url: str, *, limit: int, status: SessionStatus | None, agent: str | None
) -> list[SessionRecord]:
    """Newest first, up to ``limit`` sessions of the store at ``url``."""
    from sandbox_agent.store import open_store

    async with await open_store(url, create=False) as store:
        found: list[SessionRecord] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await store.list_sessions(
                limit=min(500, limit - len(found)), cursor=cursor, status=status, agent=agent
            )
            found.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return found


@sessions_app.command("list")
def list_command(
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many sessions.")] = 100,
    status: Annotated[
        str | None, typer.Option(help="Only sessions with this status (active or ended).")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only sessions of this agent.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List sessions with their status, agent, event count and last activity."""
    from sandbox_agent.events import format_time
    from sandbox_agent.store import SessionStatus

    if status is not None and status not in get_args(SessionStatus):
        raise typer.BadParameter("status must be active or ended", param_hint="--status")
    wanted = cast("SessionStatus | None", status)
    records = run(
        lambda: list_store_sessions(store_url(store), limit=limit, status=wanted, agent=agent)
    )
    if json_output:
        print_json([r.model_dump(mode="json") for r in records])
        return
    from rich.table import Table

    table = Table(title=f"{len(records)} session(s)", title_justify="left")
    for column in ("id", "agent", "status", "events", "last activity", "title"):
        table.add_column(column, justify="right" if column == "events" else "left")
    for r in records:
        table.add_row(
            r.id,
            r.agent,
            r.status,
            str(r.event_count),
            format_time(r.updated_at),
            r.title or "",
        )
    console().print(table)
