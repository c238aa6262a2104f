"""Forking a session: a new session whose stream starts as a copy of another's first events.

``fork_stream`` is the store's part (``EventStore.fork_session``: events 1..N copied with new
ids, ``metadata.forked_from``), checked and annotated for the session layer; the CLI calls it
offline, the engine (``SessionEngine.fork``) online. The fork then *continues* with its own
agent, the first time it is served (``LiveSession.ensure_adapter``): on a native fork of the
source's agent session when the agent can fork one (``AgentAdapter.start_fork``) and the fork
point was the source's end with no turn running there; otherwise on a fresh agent session, the
conversation up to the fork point restored by replay before its first prompt. Which way was
taken is recorded in the fork's stream as ``session.resumed {reason: forked, native_resume,
replayed_events}``, the first event after the copy, and in ``metadata.forked_from``.

``metadata.forked_from`` of a fork: ``session_id`` and ``sequence`` (the store's), then
``native_session_id`` (the agent session a native fork copies; None: restore by replay), and,
once it continued, ``native_resume``.
"""

from __future__ import annotations

import secrets
from typing import Any

from sandbox_agent.replay import state_at
from sandbox_agent.sessions.errors import InvalidSessionRequest
from sandbox_agent.store import EventStore, SessionExists, SessionNotFound, SessionRecord

#: ``session.resumed`` reason of a fork's first event after the copy.
FORK_REASON = "forked"


async def fork_stream(
    store: EventStore, source_id: str, new_id: str, at: int | None = None
) -> SessionRecord:
    """Copy ``source_id``'s events 1..``at`` (all when None) into the new session ``new_id``.

    Raises ``SessionNotFound`` (no source), ``SessionExists`` (``new_id`` taken),
    ``InvalidSessionRequest`` (``at`` < 1, or a source without events: a fork holds at least
    the source's ``session.started``) or ``SequencePastEnd`` (``at`` past the source's last
    event). What a live source appends meanwhile is not copied: the fork holds what was
    stored when it was made, a turn running there included (the fork closes it when it
    continues, as ``interrupted``)."""
    if at is not None and at < 1:
        raise InvalidSessionRequest(f"fork point must be >= 1, got {at}", source_id)
    source = await store.get_session(source_id)
    if source is None:
        raise SessionNotFound(source_id)
    if await store.get_session(new_id) is not None:
        raise SessionExists(new_id)
    upto = source.last_sequence if at is None else at
    if upto < 1:
        raise InvalidSessionRequest("the session has no event to fork yet", source_id)
    state = await state_at(store, source_id, upto)  # SequencePastEnd beyond the end
    record = await store.fork_session(source_id, new_id, at=upto)
    try:
        # Native only at the source's end (its agent session holds no more than the copy)
        # and between turns (a running turn's native session is half written).
        at_end = await store.last_sequence(source_id) == upto
        native = state.native_session_id if at_end and state.open_turn is None else None
        origin: dict[str, Any] = {**record.metadata.get("forked_from", {})}
        origin["native_session_id"] = native
        return await store.update_session(
            new_id, metadata={**record.metadata, "forked_from": origin}
        )
    except BaseException:
        await store.delete_session(new_id)
        raise


def fork_origin(record: SessionRecord) -> dict[str, Any] | None:
    """``metadata.forked_from`` of a fork, None for any other session."""
    value = record.metadata.get("forked_from")
    return value if isinstance(value, dict) and "sequence" in value else None


def new_fork_id(source_id: str) -> str:
    """A fresh id for a fork of ``source_id``: ``<source>-fork-<8 hex digits>``, the source's
    part cut so that it stays within the 128 characters of an id."""
    return f"{source_id[:114]}-fork-{secrets.token_hex(4)}"
