"""``sandbox-agent fork``: fork a session in a store, offline (``sessions/fork.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sandbox_agent.cli.app import JsonOption, StoreOption, app, console, fail, print_json, store_url
from sandbox_agent.cli.replay import open_existing, run_replay

if TYPE_CHECKING:
    from sandbox_agent.store import SessionRecord


@app.command("fork")
def fork_command(
    session: Annotated[str, typer.Argument(help="The session to fork.", show_default=False)],
    new: Annotated[str, typer.Argument(help="The fork's session id.", show_default=False)],
    at: Annotated[
        int | None,
        typer.Option(
            "--at",
            min=1,
            help="Copy events 1..N (default: all). Past the last event: an error.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """Fork a session: a new session whose stream is a copy of events 1..N of SESSION. It
    continues with its own agent once a server serves it (natively forked or restored by
    replay; see docs/persistence.md, "Fork")."""
    from sandbox_agent.api import ID_RE
    from sandbox_agent.sessions import SessionError
    from sandbox_agent.sessions.fork import fork_stream

    if ID_RE.fullmatch(new) is None:
        fail(f"invalid session id {new!r}: 1 to 128 of A-Z a-z 0-9 . _ : -")
    url = store_url(store)

    async def go() -> SessionRecord:
        async with await open_existing(url) as opened:
            return await fork_stream(opened, session, new, at)

    try:
        record = run_replay(go)
    except SessionError as exc:  # the store's and the replay's errors: run_replay's
        fail(str(exc))
    origin = record.metadata["forked_from"]
    if json_output:
        print_json(
            {
                "sessionId": record.id,
                "forkedFrom": {"sessionId": origin["session_id"], "sequence": origin["sequence"]},
                "events": record.event_count,
                # Whether its agent may fork its own session (else: restore by replay).
                "nativeFork": origin.get("native_session_id") is not None,
            }
        )
        return
    how = (
        "on a native fork of its agent's session where the agent can fork one, else restored "
        "by replay"
        if origin.get("native_session_id") is not None
        else "restored by replay"
    )
    console().print(
        f"forked {session} at {origin['sequence']} into {record.id} "
        f"({record.event_count} event(s)); once a server serves it, it continues {how}",
        highlight=False,
        soft_wrap=True,
    )
