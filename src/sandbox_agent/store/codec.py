"""Events to SQL row values and back: the encode/decode steps of the append and read paths."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, Field, Json, TypeAdapter, ValidationError
from pydantic_core import from_json, to_json

from sandbox_agent.events import EventSource, UniversalEvent
from sandbox_agent.events.envelope import trusted_event
from sandbox_agent.store.records import PositionedEvent


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


# A stored row, validated field by field with the types of ``UniversalEvent``'s fields (a test
# holds the two to the same verdicts): a whole page is validated in one call into pydantic-core,
# instead of one ``model_validate`` per row, which costs about twice as much.
_ROW_TYPES = (
    Annotated[int, Field(ge=1)],  # sequence
    str,  # event_id
    AwareDatetime,  # time
    str,  # type (EventType | str accepts any string)
    EventSource,  # source
    bool,  # synthetic
    str | None,  # native_session_id
    Json[dict[str, Any]],  # data
    Json[Any] | None,  # type: ignore[misc]  # raw
)
_ROWS: TypeAdapter[list[tuple[Any, ...]]] = TypeAdapter(list[tuple[_ROW_TYPES]])  # type: ignore[valid-type]
# The global log's rows: (position, session_id, *row).
_POSITIONED_ROWS: TypeAdapter[list[tuple[Any, ...]]] = TypeAdapter(
    list[tuple[(int, str, *_ROW_TYPES)]]  # type: ignore[valid-type]
)


def decode_rows(session_id: str, rows: Sequence[Sequence[Any]]) -> list[UniversalEvent]:
    """Rows of one session (``StoredRow``: sequence first) as validated ``UniversalEvent``s."""
    if not rows:
        return []
    with paused_gc():
        try:
            values = _ROWS.validate_python(_tuples(rows))
        except ValidationError:
            # Row by row: a naive time from asyncpg is made UTC, and a bad row's error names
            # the event's field.
            return [decode_event(session_id, *row) for row in rows]
        return [_event(session_id, *value) for value in values]


def decode_positioned_rows(rows: Sequence[Sequence[Any]]) -> list[PositionedEvent]:
    """Rows of the global log (``(position, session_id, *StoredRow)``) as positioned events."""
    if not rows:
        return []
    with paused_gc():
        try:
            values = _POSITIONED_ROWS.validate_python(_tuples(rows))
        except ValidationError:
            return [PositionedEvent(row[0], decode_event(*row[1:])) for row in rows]
        return [PositionedEvent(value[0], _event(*value[1:])) for value in values]


def _tuples(rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    # pydantic takes tuples and lists as tuples, not the row types of every database library.
    return rows if type(rows[0]) in (tuple, list) else [tuple(row) for row in rows]


def _event(
    session_id: str,
    sequence: int,
    event_id: str,
    time: datetime,
    type_: str,
    source: str,
    synthetic: bool,
    native_session_id: str | None,
    data: dict[str, Any],
    raw: Any,
) -> UniversalEvent:
    return trusted_event(
        {
            "event_id": event_id,
            "sequence": sequence,
            "time": time,
            "session_id": session_id,
            "native_session_id": native_session_id,
            "source": source,
            "synthetic": synthetic,
            "type": type_,
            "data": data,
            "raw": raw,
        }
    )


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
