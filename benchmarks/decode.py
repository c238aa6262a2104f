"""How the store turns stored rows into validated events, against the ways it could.

    python benchmarks/decode.py            # 100,000 rows of a 300-character item.delta
    python benchmarks/decode.py --quick    # small counts: a smoke test, not a measurement

Same rows, same run, in turn (a warm-up, then 5 rounds of each): the raw ``sqlite3`` select of
the store's file (the baseline of the store benchmark's read rows), then three decodes of the
rows it returned, each timed alone:

- ``model_validate`` per row (``codec.decode_event``: what the store did before session 6),
- the page in one pydantic-core call (``codec.decode_rows``: what the store does),
- the same without each of its two speed tricks: with the garbage collector left running
  (``codec.paused_gc`` off), and with each event built by ``UniversalEvent.model_construct``
  instead of ``trusted_event`` (which sets pydantic's private fields itself),
- no validation at all (the events built from the rows as trusted, the floor of any decode).

The figures are microseconds per row (the median of the rounds) and each decode's ratio to
the select, so ``select / (select + decode)`` is the read ratio it allows.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

from pydantic_core import from_json

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.events.envelope import trusted_event
from sandbox_agent.store import SessionRecord, codec, open_store
from sandbox_agent.store.codec import decode_event, decode_rows, paused_gc

SELECT = (
    "SELECT sequence, event_id, time, type, source, synthetic, native_session_id, data, raw "
    "FROM events WHERE session_id = ? AND sequence > ? ORDER BY sequence"
)
DELTA = "x" * 300


async def fill(path: Path, count: int) -> None:
    async with await open_store(f"sqlite:///{path}") as store:
        await store.create_session(SessionRecord(id="s", agent="mock"))
        for start in range(0, count, 1000):
            drafts = [
                EventDraft(type="item.delta", data={"item_id": "i", "delta": DELTA})
                for _ in range(min(1000, count - start))
            ]
            await store.append("s", drafts, expected_sequence=start)


def per_row(rows: list[Any]) -> Any:
    with paused_gc():
        return [decode_event("s", *row) for row in rows]


def as_page(rows: list[Any]) -> Any:
    return decode_rows("s", rows)


def constructed(fields: dict[str, Any]) -> UniversalEvent:
    return UniversalEvent.model_construct(**fields)


@contextmanager
def without(trick: str) -> Iterator[None]:
    """The store's codec with one speed trick taken out, for a measure of what it gains."""
    name, replacement = {
        "paused_gc": ("paused_gc", nullcontext),
        "trusted_event": ("trusted_event", constructed),
    }[trick]
    with mock.patch.object(codec, name, replacement):
        yield


def as_page_without(trick: str, rows: list[Any]) -> Any:
    with without(trick):
        return decode_rows("s", rows)


def unvalidated(session_id: str, rows: Sequence[Sequence[Any]]) -> list[UniversalEvent]:
    """Stored rows as events with no validation at all: each payload parsed and each event
    built as the store builds its own (``trusted_event``), the floor of any decode. Also the
    store benchmark's floor of its read rows (``store.py``)."""
    with paused_gc():
        return [
            trusted_event(
                {
                    "event_id": event_id,
                    "sequence": sequence,
                    "time": time_,
                    "session_id": session_id,
                    "native_session_id": native,
                    "source": source,
                    "synthetic": bool(synthetic),
                    "type": type_,
                    "data": from_json(data),
                    "raw": None if raw is None else from_json(raw),
                }
            )
            for sequence, event_id, time_, type_, source, synthetic, native, data, raw, *_ in rows
        ]


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - started
    del result
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    args = parser.parse_args()
    count, rounds = (2000, 2) if args.quick else (100_000, 5)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "decode.db"
        asyncio.run(fill(path, count))
        db = sqlite3.connect(path)
        rows = db.execute(SELECT, ("s", 0)).fetchall()
        assert len(rows) == count
        expected = [e.model_dump() for e in per_row(rows[:50])]
        assert [e.model_dump() for e in as_page(rows[:50])] == expected
        for trick in ("paused_gc", "trusted_event"):
            assert [e.model_dump() for e in as_page_without(trick, rows[:50])] == expected
        ways: dict[str, Callable[[], Any]] = {
            "select (sqlite3)": lambda: db.execute(SELECT, ("s", 0)).fetchall(),
            "decode: model_validate per row": lambda: per_row(rows),
            "decode: the page in one call (the store)": lambda: as_page(rows),
            "  the same, collector not paused": lambda: as_page_without("paused_gc", rows),
            "  the same, events by model_construct": lambda: as_page_without("trusted_event", rows),
            "decode: no validation (floor)": lambda: unvalidated("s", rows),
        }
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for fn in ways.values():
            timed(fn)  # warm-up
        for _ in range(rounds):
            for name, fn in ways.items():
                seconds[name].append(timed(fn))
        db.close()
    select = statistics.median(seconds["select (sqlite3)"])
    print(f"{count:,} rows, median of {rounds} rounds each, in turn")
    for name, values in seconds.items():
        median = statistics.median(values)
        line = f"{name:44} {median / count * 1e6:6.2f} us/row"
        if name.startswith(("decode", " ")):
            line += f"   read ratio it allows: {select / (select + median):.2f}x"
        print(line)


if __name__ == "__main__":
    main()
