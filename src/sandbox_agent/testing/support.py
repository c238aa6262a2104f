"""Small builders and checks for store tests: drafts, sessions, reading helpers, and
``promise``, which names the promise an assertion checks."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncGenerator
from typing import Any, cast

from sandbox_agent.events import EventDraft, UniversalEvent, new_event_id
from sandbox_agent.store import EventStore, SessionRecord


def promise(name: str, detail: object = "") -> str:
    """An assertion message naming the promise broken: ``promise 'gapless sequences': ...``."""
    return f"promise {name!r}: {detail}" if detail != "" else f"promise {name!r}"


def delta(text: str = "x", *, event_id: str | None = None, **fields: Any) -> EventDraft:
    """An ``item.delta`` draft with an event id of its own (so it can be retried)."""
    return EventDraft(
        type="item.delta",
        data={"item_id": "item_1", "delta": text},
        event_id=event_id or new_event_id(),
        **fields,
    )


def deltas(n: int, prefix: str = "d") -> list[EventDraft]:
    """``n`` ``item.delta`` drafts, each with its own event id."""
    return [delta(f"{prefix}{i}") for i in range(n)]


def ended(**fields: Any) -> EventDraft:
    """A ``session.ended`` draft (it ends the session's projection)."""
    return EventDraft(
        type="session.ended",
        data={"reason": "completed", "terminated_by": "agent"},
        source="daemon",
        event_id=new_event_id(),
        **fields,
    )


def resumed(**fields: Any) -> EventDraft:
    """A ``session.resumed`` draft (it makes the session active again)."""
    return EventDraft(
        type="session.resumed",
        data={"reason": "reopened", "native_resume": True, "replayed_events": 0},
        source="daemon",
        event_id=new_event_id(),
        **fields,
    )


async def new_session(store: EventStore, session_id: str | None = None, **fields: Any) -> str:
    """Create a session (agent ``mock`` unless given, a random id unless given); its id."""
    fields.setdefault("agent", "mock")
    record = SessionRecord(id=session_id or f"s_{secrets.token_hex(5)}", **fields)
    return (await store.create_session(record)).id


def subscription(
    store: EventStore, session_id: str, after: int = 0, *, page_size: int = 1000
) -> AsyncGenerator[UniversalEvent, None]:
    """``store.subscribe(...)`` typed as the async generator it is (for ``aclosing``)."""
    return cast(
        AsyncGenerator[UniversalEvent, None],
        store.subscribe(session_id, after=after, page_size=page_size),
    )


def dumped(events: list[UniversalEvent]) -> list[dict[str, Any]]:
    """Events as plain dicts, for comparisons that show every field on failure."""
    return [e.model_dump() for e in events]


def same_as_draft(event: UniversalEvent, draft: EventDraft) -> bool:
    """Whether a stored event keeps everything its draft gave (the time only when given)."""
    return (
        event.event_id == draft.event_id
        and event.type == draft.type
        and event.data == draft.data
        and event.source == draft.source
        and event.synthetic == draft.synthetic
        and event.native_session_id == draft.native_session_id
        and event.raw == draft.raw
        and (draft.time is None or event.time == draft.time)
    )


async def take(
    store: EventStore, session_id: str, n: int, after: int = 0, timeout: float = 10.0
) -> list[UniversalEvent]:
    """The first ``n`` events ``subscribe`` yields (``TimeoutError`` after ``timeout`` s; fewer
    when the store closes first)."""
    got: list[UniversalEvent] = []
    async with asyncio.timeout(timeout):
        async with contextlib.aclosing(subscription(store, session_id, after)) as events:
            async for event in events:
                got.append(event)
                if len(got) == n:
                    break
    return got


async def read_all_paged(store: EventStore, page: int) -> list[tuple[int, UniversalEvent]]:
    """The whole global log as ``(position, event)``, read ``page`` events at a time."""
    found: list[tuple[int, UniversalEvent]] = []
    after = 0
    while True:
        chunk = await store.read_all(after_position=after, limit=page)
        if not chunk:
            return found
        assert len(chunk) <= page, promise("read_all pages", f"{len(chunk)} > limit {page}")
        found.extend((p.position, p.event) for p in chunk)
        after = chunk[-1].position


def with_option(url: str, option: str) -> str:
    """``url`` with ``option`` (``name=value``) added to its query string."""
    return f"{url}{'&' if '?' in url else '?'}{option}"
