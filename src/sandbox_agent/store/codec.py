"""Events to SQL row values and back: the encode/decode steps of the append and read paths."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic_core import from_json, to_json

from sandbox_agent.events import EventDraft, UniversalEvent


def dump_json(value: Any) -> str:
    return to_json(value).decode()


def dump_raw(value: Any) -> str | None:
    """``raw`` as JSON text; Python None (no raw payload) is SQL NULL."""
    return None if value is None else to_json(value).decode()


def load_json(text: str | bytes | None) -> Any:
    return None if text is None else from_json(text)


def decode_event(
    session_id: str,
    sequence: int,
    event_id: str,
    time: datetime | str,
    type_: str,
    source: str,
    synthetic: bool | int,
    native_session_id: str | None,
    data: str | bytes,
    raw: str | bytes | None,
) -> UniversalEvent:
    """A stored row as a validated ``UniversalEvent``."""
    if isinstance(time, datetime) and time.tzinfo is None:
        # asyncpg hands back timestamptz values at the edge of its range (year 1) without a
        # timezone; they are UTC like every other.
        time = time.replace(tzinfo=UTC)
    return UniversalEvent.model_validate(
        {
            "event_id": event_id,
            "sequence": sequence,
            "time": time,
            "session_id": session_id,
            "native_session_id": native_session_id,
            "source": source,
            "synthetic": bool(synthetic),
            "type": type_,
            "data": from_json(data),
            "raw": None if raw is None else from_json(raw),
        }
    )


def stored_event(
    draft: EventDraft, session_id: str, sequence: int, event_id: str, time: datetime
) -> UniversalEvent:
    return draft.to_event(session_id=session_id, sequence=sequence, event_id=event_id, time=time)


class _GcPause:
    lock = threading.Lock()
    depth = 0  # pauses in progress, in any thread
    resume = False  # whether the collector was on when the first began


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold the cyclic garbage collector while many fresh objects are built (a page of events,
    a large snapshot): the collections they set off would otherwise take a third of the time.
    Nests and works across threads; the collector comes back as it was."""
    with _GcPause.lock:
        if _GcPause.depth == 0:
            _GcPause.resume = gc.isenabled()
            gc.disable()
        _GcPause.depth += 1
    try:
        yield
    finally:
        with _GcPause.lock:
            _GcPause.depth -= 1
            if _GcPause.depth == 0 and _GcPause.resume:
                gc.enable()
