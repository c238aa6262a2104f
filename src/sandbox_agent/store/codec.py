"""Events to SQL row values and back: the encode/decode steps of the append and read paths."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import repeat
from typing import Annotated, Any

from pydantic import AwareDatetime, Field, Json, TypeAdapter, ValidationError
from pydantic_core import from_json, to_json

from sandbox_agent.events import EventSource, UniversalEvent
from sandbox_agent.events.envelope import trusted_event
from sandbox_agent.events.versions import UpcastError, Upcasters
from sandbox_agent.store.records import PositionedEvent
from sandbox_agent.store.seal import is_envelope


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
    schema_version: int = 1,  # a StoredRow's last column: upcast before this
) -> UniversalEvent:
    """A stored row as a validated ``UniversalEvent`` (its data already upcast)."""
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


# A page of rows is validated column by column in one call into pydantic-core, with the types of
# ``UniversalEvent``'s fields (a test holds the two to the same verdicts): 1.5-1.8x cheaper than
# one ``model_validate`` per row, and a time is parsed once per distinct text (the events of one
# append share theirs). Figures: docs/performance.md, "Session 7: reads".
_COLUMNS: TypeAdapter[tuple[list[Any], ...]] = TypeAdapter(
    tuple[
        list[Annotated[int, Field(ge=1)]],  # sequence
        list[str],  # event_id
        list[str],  # type (EventType | str accepts any string)
        list[EventSource],  # source
        list[bool],  # synthetic
        list[str | None],  # native_session_id
        list[Json[dict[str, Any]]],  # data
        list[Json[Any] | None],  # raw: one value per row, never shared
        list[AwareDatetime],  # the distinct times
    ]
)
# The columns of a StoredRow that make the event (its schema_version is for upcasting only).
_STORED = 9
# The global log's rows add (position, session_id) in front.
_POSITIONS: TypeAdapter[tuple[list[int], list[str]]] = TypeAdapter(tuple[list[int], list[str]])


def decode_rows(session_id: str, rows: Sequence[Sequence[Any]]) -> list[UniversalEvent]:
    """Rows of one session (``StoredRow``: sequence first) as validated ``UniversalEvent``s."""
    if not rows:
        return []
    with paused_gc():
        try:
            return _events(repeat(session_id), *list(zip(*rows, strict=True))[:_STORED])
        except ValidationError:
            # Row by row: a naive time from asyncpg is made UTC, and a bad row's error names
            # the event's field.
            return [decode_event(session_id, *row) for row in rows]


def decode_positioned_rows(rows: Sequence[Sequence[Any]]) -> list[PositionedEvent]:
    """Rows of the global log (``(position, session_id, *StoredRow)``) as positioned events."""
    if not rows:
        return []
    with paused_gc():
        try:
            positions, session_ids, *columns = list(zip(*rows, strict=True))[: 2 + _STORED]
            valid_positions, valid_ids = _POSITIONS.validate_python((positions, session_ids))
            return list(map(PositionedEvent, valid_positions, _events(valid_ids, *columns)))
        except ValidationError:
            return [PositionedEvent(row[0], decode_event(*row[1:])) for row in rows]


def _events(
    session_ids: Iterable[str],
    sequences: Sequence[Any],
    event_ids: Sequence[Any],
    times: Sequence[Any],
    *columns: Sequence[Any],
) -> list[UniversalEvent]:
    """The events of a page's columns, in ``StoredRow`` order after the session ids."""
    distinct: Sequence[Any] = list(dict.fromkeys(times))
    if not all(type(time) is str for time in distinct):
        # Times from a database library, one per row: equal instants may differ in offset.
        distinct, times = times, range(len(times))
    (sequences, event_ids, types, sources, synthetics, natives, data, raws, parsed) = (
        _COLUMNS.validate_python((sequences, event_ids, *columns, distinct))
    )
    time_of: Mapping[Any, datetime] | Sequence[datetime] = (
        parsed if isinstance(times, range) else dict(zip(distinct, parsed, strict=True))
    )
    return [
        trusted_event(
            {
                "event_id": event_id,
                "sequence": sequence,
                "time": time_of[time],
                "session_id": session_id,
                "native_session_id": native,
                "source": source,
                "synthetic": synthetic,
                "type": type_,
                "data": payload,
                "raw": raw,
            }
        )
        for (
            session_id,
            sequence,
            event_id,
            time,
            type_,
            source,
            synthetic,
            native,
            payload,
            raw,
        ) in zip(
            session_ids,
            sequences,
            event_ids,
            times,
            types,
            sources,
            synthetics,
            natives,
            data,
            raws,
            strict=False,  # session_ids may be endless (one session's id repeated)
        )
    ]


class _GcPause:
    lock = threading.Lock()
    depth = 0  # pauses in progress, in any thread
    resume = False  # whether the collector was on when the first began


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold the cyclic garbage collector while many fresh objects are built (a page of events,
    a large snapshot): the collections they set off would otherwise make a page's decode take
    1.6-1.8x as long (``benchmarks/decode.py`` measures it in every run).
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


#: Why an old event whose payload stays sealed cannot be upcast.
SEALED_OLD = (
    "its payload is encrypted: export it with --decrypt, or bring the store to the current "
    "versions first (sandbox-agent db upcast, with the keys)"
)


def upcast_rows(
    rows: Sequence[Sequence[Any]], upcasters: Upcasters, first: int = 0
) -> Sequence[Sequence[Any]]:
    """``rows`` (``StoredRow``s starting at column ``first``: 0, or 2 for the global log's)
    with the ``data`` of each row stored at an old schema version brought to the current shape
    and its version set to the current one. The rows come back as they are (the same list) when
    none is old, which a check per row finds without parsing. ``UpcastError`` (a ``ValueError``)
    when an old row cannot be brought up."""
    if not upcasters or not rows:
        return rows
    type_at, data_at, version_at = first + 3, first + 7, first + _STORED
    current: list[Sequence[Any]] | None = None
    for index, row in enumerate(rows):
        event_type, version = row[type_at], int(row[version_at])
        if not upcasters.is_stale(event_type, version):
            continue
        if is_envelope(row[data_at]):
            # Left sealed (an export without --decrypt): there is no shape to upcast.
            raise UpcastError(event_type, version, SEALED_OLD)
        if current is None:
            current = list(rows)
        upcast = list(row)
        upcast[data_at] = dump_json(upcasters.upcast(event_type, version, from_json(row[data_at])))
        upcast[version_at] = upcasters.current(event_type)
        current[index] = upcast
    return rows if current is None else current
