"""``sandbox-agent db upcast``: rewrite the events stored at an old schema version in their
current shape, once, through the optional driver primitive ``rewrite_events``. Reads upcast
lazily without it (events/versions.py); this only saves them the work and lets the old
upcasters go."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic_core import from_json

from sandbox_agent.events.versions import UpcastError
from sandbox_agent.store.driver import RewrittenRow
from sandbox_agent.store.errors import SchemaVersionError
from sandbox_agent.store.event_store import EventStore

PAGE = 500


@dataclass
class UpcastSummary:
    """What ``upcast_store`` did: sessions gone through, events rewritten (by type), events
    already current."""

    sessions: int = 0
    events_rewritten: int = 0
    events_current: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


async def upcast_store(
    store: EventStore, *, on_progress: Callable[[int], None] | None = None
) -> UpcastSummary:
    """Rewrite every event of ``store`` whose schema version is behind its type's current one
    (``store.upcasters``) in the current shape, sealed as the store seals new payloads. A page
    of events a transaction, a session at a time: it can stop and run again, and a server may
    append meanwhile (its new events are current already). ``SchemaVersionError`` for an event
    that cannot be upcast (nothing of its page is written)."""
    upcasters = store.upcasters
    summary = UpcastSummary()
    for record in await store.all_sessions():
        summary.sessions += 1
        sid = record.id
        after = 0
        while rows := await store.driver.select_events(sid, after, PAGE):
            stale = [row for row in rows if upcasters.is_stale(str(row[3]), int(row[9]))]
            summary.events_current += len(rows) - len(stale)
            if stale:
                changed: list[RewrittenRow] = []
                for row, opened in zip(stale, store._open_rows(sid, stale), strict=True):
                    sequence, event_id, event_type = int(row[0]), str(row[1]), str(row[3])
                    try:
                        data = upcasters.upcast(event_type, int(row[9]), from_json(opened[7]))
                    except UpcastError as exc:
                        raise SchemaVersionError(
                            f"session {sid!r} event {sequence}: {exc}; nothing of events "
                            f"{int(rows[0][0])}..{int(rows[-1][0])} was rewritten"
                        ) from exc
                    raw = row[8] if row[8] is None or isinstance(row[8], str) else str(row[8])
                    changed.append(
                        RewrittenRow(
                            sequence,
                            store._payload(sid, event_id, "data", data),
                            raw,
                            upcasters.current(event_type),
                        )
                    )
                    summary.by_type[event_type] = summary.by_type.get(event_type, 0) + 1
                await store.driver.rewrite_events(sid, changed)
                summary.events_rewritten += len(changed)
            after = int(rows[-1][0])
            if on_progress is not None:
                on_progress(len(rows))
    return summary
