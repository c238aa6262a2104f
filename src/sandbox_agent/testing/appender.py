"""Concurrent appenders for the contract's concurrency tests, in-process or as a child process.

As a script::

    python -m sandbox_agent.testing.appender URL SESSION WRITER MODE N SIZE START_FILE

opens the store, prints ``ready``, waits until ``START_FILE`` exists (so that all writers
start together), runs ``race`` or ``free`` and prints its report as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from sandbox_agent.events import EventDraft
from sandbox_agent.store import EventStore, SequenceConflict, open_store


def batch(writer: str, label: str, size: int) -> list[EventDraft]:
    """``size`` events, each naming its writer, batch and place in the batch."""
    return [
        EventDraft(
            type="item.delta",
            data={"item_id": f"{writer}/{label}", "delta": str(j)},
            event_id=f"{writer}/{label}/{j}",
        )
        for j in range(size)
    ]


async def race(store: EventStore, session_id: str, writer: str, rounds: int, size: int) -> Any:
    """Round r: append ``size`` events expecting the stream at ``r * size``. Exactly one
    writer can win each round; the report lists the rounds won and the conflicts seen."""
    won: dict[int, list[int]] = {}
    conflicts: list[tuple[int, int, int]] = []
    for r in range(rounds):
        try:
            stored = await store.append(
                session_id, batch(writer, f"r{r}", size), expected_sequence=r * size
            )
        except SequenceConflict as exc:
            conflicts.append((r, exc.expected, exc.actual))
        else:
            won[r] = [e.sequence for e in stored]
        await asyncio.sleep(0)  # let the other writers of this process try the round too
    return {"writer": writer, "won": won, "conflicts": conflicts}


async def free(store: EventStore, session_id: str, writer: str, batches: int, size: int) -> Any:
    """Append ``batches`` batches of ``size`` events at the end, reporting their sequences."""
    placed: dict[int, list[int]] = {}
    for k in range(batches):
        stored = await store.append(session_id, batch(writer, f"b{k}", size))
        placed[k] = [e.sequence for e in stored]
        await asyncio.sleep(0)
    return {"writer": writer, "placed": placed}


def started(start_file: Path) -> bool:
    # A stat every millisecond: cheap enough to block the loop on.
    return start_file.exists()


async def main(argv: list[str]) -> None:
    url, session_id, writer, mode, n, size, start_file = argv
    async with await open_store(url) as store:
        print("ready", flush=True)
        start = Path(start_file)
        deadline = time.monotonic() + 60
        while not started(start):
            if time.monotonic() > deadline:
                raise SystemExit("no start signal")
            await asyncio.sleep(0.001)
        run = race if mode == "race" else free
        report = await run(store, session_id, writer, int(n), int(size))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
