"""Replay benchmarks: how fast the reducer folds events, and what snapshots buy ``state_at``.

    python benchmarks/replay.py                 # 100k events, snapshots every 1000
    python benchmarks/replay.py --events 20000  # quicker

Measures, on one session of realistic shape (turns of a prompt, an answer streamed as
``item.delta`` events with 300-byte payloads, a tool call and its result):

1. replay throughput from a list of events already in memory (events folded per second);
2. replay throughput straight from a SQLite store (read + validate + fold), and the read alone;
3. ``state_at`` latest on the session with snapshots every ``--snapshot-every`` events,
   against a full replay of the same events (the spec's goal: at least 20x faster).

Prints absolute figures and the ratios; ``--json`` prints them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.replay import (
    REDUCER_VERSION,
    SessionState,
    SnapshotWriter,
    replay,
    state_at,
)
from sandbox_agent.store import EventStore, SessionRecord, open_store

DELTA_PAYLOAD_BYTES = 300
DELTAS_PER_ANSWER = 40


def session_events(
    session_id: str, count: int, delta_bytes: int = DELTA_PAYLOAD_BYTES
) -> list[UniversalEvent]:
    """``count`` events of a well-formed session (turns of 50 events, mostly deltas whose
    ``data`` is ``delta_bytes`` long as JSON)."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    drafts: list[EventDraft] = [
        EventDraft(type="session.started", data={"metadata": {"agent": "mock"}}, source="daemon")
    ]
    overhead = len(json.dumps({"item_id": "msg_00000", "native_item_id": None, "delta": ""}))
    chunk = ("lorem ipsum dolor sit amet " * 40)[: max(1, delta_bytes - overhead)]
    turn = 0
    while len(drafts) < count:
        turn += 1
        user, answer, call, result = (f"{k}_{turn:05d}" for k in ("usr", "msg", "cal", "res"))
        text = [{"type": "text", "text": f"prompt {turn}"}]
        drafts += [
            EventDraft(type="turn.started", data={"turn_id": f"t{turn}"}, source="daemon"),
            _item("item.started", user, "message", "user", text, "client"),
            _item("item.completed", user, "message", "user", text, "client"),
            _item("item.started", answer, "message", "assistant", []),
        ]
        drafts += [
            EventDraft(type="item.delta", data={"item_id": answer, "delta": chunk})
            for _ in range(DELTAS_PER_ANSWER)
        ]
        tool = {"type": "tool_call", "name": "bash", "arguments": '{"cmd":"ls"}', "call_id": call}
        out = {"type": "tool_result", "call_id": call, "output": "a.py\nb.py\n"}
        drafts += [
            _item(
                "item.completed",
                answer,
                "message",
                "assistant",
                [{"type": "text", "text": chunk * DELTAS_PER_ANSWER}],
            ),
            _item("item.started", call, "tool_call", "assistant", [tool]),
            _item("item.completed", call, "tool_call", "assistant", [tool]),
            _item("item.started", result, "tool_result", "tool", [out]),
            _item("item.completed", result, "tool_result", "tool", [out]),
            EventDraft(type="turn.ended", data={"turn_id": f"t{turn}", "reason": "completed"}),
        ]
    return [
        d.to_event(
            session_id=session_id,
            sequence=n,
            event_id=f"evt_{session_id}_{n:07d}",
            time=t0 + timedelta(milliseconds=n),
        )
        for n, d in enumerate(drafts[:count], start=1)
    ]


def _item(
    kind: str, item_id: str, item_kind: str, role: str, content: list[Any], source: str = "agent"
) -> EventDraft:
    status = "completed" if kind == "item.completed" else "in_progress"
    item = {
        "item_id": item_id,
        "kind": item_kind,
        "role": role,
        "status": status,
        "content": content,
    }
    return EventDraft(type=kind, data={"item": item}, source=source)  # type: ignore[arg-type]


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The best time of ``runs`` calls. Each starts with the previous result freed and the heap
    collected, so a call's figure is its own work, not the freeing of the last one's state."""
    times, result = [], None
    for _ in range(runs):
        result = None  # free the previous result outside the timed call
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


async def abest_of(runs: int, fn: Callable[[], Awaitable[Any]]) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        result = None  # free the previous result outside the timed call
        gc.collect()
        start = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - start)
    return min(times), times, result


async def fill(
    store: EventStore, session_id: str, count: int, delta_bytes: int, every: int | None
) -> None:
    events = session_events(session_id, count, delta_bytes)
    await store.create_session(SessionRecord(id=session_id, agent="mock"))
    writer = (
        SnapshotWriter(store, SessionState(session_id=session_id), snapshot_every=every)
        if every
        else None
    )
    for start in range(0, len(events), 1000):
        batch = [EventDraft.from_event(e) for e in events[start : start + 1000]]
        stored = await store.append(session_id, batch, expected_sequence=start)
        if writer is not None:
            await writer.record(stored)


async def read_all(store: EventStore, session_id: str) -> int:
    count, after = 0, 0
    while page := await store.read(session_id, after=after, limit=1000):
        count += len(page)
        after = page[-1].sequence
    return count


async def store_figures(
    n: int, delta_bytes: int, every: int, runs: int, directory: Path
) -> dict[str, float]:
    """Two copies of the session in SQLite, one written with snapshots; only the store holds
    the events while measuring (a large heap in this process would slow every GC pass)."""
    async with await open_store(f"sqlite:///{directory / 'replay-bench.db'}") as store:
        start = time.perf_counter()
        await fill(store, "plain", n, delta_bytes, None)
        fill_plain = time.perf_counter() - start
        start = time.perf_counter()
        await fill(store, "snapped", n, delta_bytes, every)
        fill_snapped = time.perf_counter() - start
        gc.collect()
        read_s, _, _ = await abest_of(runs, lambda: read_all(store, "plain"))
        full_s, _, full_state = await abest_of(
            runs, lambda: state_at(store, "plain", use_snapshots=False)
        )
        snap_s, snap_times, snap_state = await abest_of(
            runs * 3, lambda: state_at(store, "snapped")
        )
        mid = n - every // 2  # worst case between snapshots: every/2 events to replay after one
        mid_s, _, _ = await abest_of(runs * 3, lambda: state_at(store, "snapped", mid))
        snapshot = await store.load_snapshot("snapped", version=REDUCER_VERSION)
        assert snapshot is not None
        snapshot_bytes = len(json.dumps(snapshot.state))
    assert full_state.model_copy(update={"session_id": "x"}) == snap_state.model_copy(
        update={"session_id": "x"}
    )
    return {
        "sqlite_fill_seconds_plain": fill_plain,
        "sqlite_fill_seconds_with_snapshots": fill_snapped,
        "sqlite_read_events_per_s": n / read_s,
        "sqlite_replay_events_per_s": n / full_s,
        "full_replay_ms": full_s * 1000,
        "state_at_latest_ms": snap_s * 1000,
        "state_at_latest_median_ms": statistics.median(snap_times) * 1000,
        "state_at_mid_interval_ms": mid_s * 1000,
        "speedup_latest": full_s / snap_s,
        "speedup_mid_interval": full_s / mid_s,
        "snapshot_mb": snapshot_bytes / 1e6,
    }


def list_figures(count: int, delta_bytes: int, runs: int) -> dict[str, float]:
    """Replay from a list of events already in memory."""
    events = session_events("bench", count, delta_bytes)
    seconds, state = best_of(runs, lambda: replay(events))
    assert state.anomalies == [], state.anomalies[:3]
    return {
        "events": len(events),
        "delta_bytes": delta_bytes,
        "list_replay_events_per_s": len(events) / seconds,
        "list_replay_ms": seconds * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--snapshot-every", type=int, default=1000)
    parser.add_argument(
        "--delta-bytes",
        type=int,
        default=DELTA_PAYLOAD_BYTES,
        help="size of each item.delta payload (default 300, the spec's workload; ~80 is "
        "closer to the few-token deltas agents stream)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    figures = list_figures(args.events, args.delta_bytes, args.runs)
    n = int(figures["events"])
    with tempfile.TemporaryDirectory() as directory:
        figures |= asyncio.run(
            store_figures(n, args.delta_bytes, args.snapshot_every, args.runs, Path(directory))
        )

    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
        return
    f = figures
    print(
        f"replay benchmark: {n} events ({args.delta_bytes}-byte delta payloads), "
        f"snapshots every {args.snapshot_every}, best of {args.runs}"
    )
    rows = [
        (
            "from a list",
            f"{f['list_replay_events_per_s']:>12,.0f} events/s",
            f"{f['list_replay_ms']:.0f} ms",
        ),
        (
            "from SQLite (full)",
            f"{f['sqlite_replay_events_per_s']:>12,.0f} events/s",
            f"{f['full_replay_ms']:.0f} ms",
        ),
        ("SQLite read alone", f"{f['sqlite_read_events_per_s']:>12,.0f} events/s", ""),
        (
            "state_at latest",
            f"{f['state_at_latest_ms']:>12.1f} ms",
            f"median {f['state_at_latest_median_ms']:.1f} ms, snapshot {f['snapshot_mb']:.1f} MB",
        ),
        (
            "state_at mid-interval",
            f"{f['state_at_mid_interval_ms']:>12.1f} ms",
            f"{args.snapshot_every // 2} events after the snapshot",
        ),
        ("speedup latest", f"{f['speedup_latest']:>12.1f}x", "goal >= 20x"),
        ("speedup mid-interval", f"{f['speedup_mid_interval']:>12.1f}x", ""),
    ]
    for name, value, note in rows:
        print(f"  {name:<22}{value}" + (f"  ({note})" if note else ""))
    print(
        f"  filling SQLite: {f['sqlite_fill_seconds_plain']:.1f} s plain, "
        f"{f['sqlite_fill_seconds_with_snapshots']:.1f} s with snapshots"
    )


if __name__ == "__main__":
    main()
