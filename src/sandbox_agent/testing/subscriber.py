"""A subscriber that checks what it is fed, usable in-process or as a child process.

    python -m sandbox_agent.testing.subscriber URL SESSION TOTAL PACE

opens the store, prints ``ready``, follows the session with ``subscribe`` until it has seen
``TOTAL`` events, then prints a JSON report. Each event must be the next sequence, with the
event id the writer gave it (``event_id_for``). With PACE ``slow`` it sleeps now and then, so
that it falls far behind the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import time
from typing import Any

from sandbox_agent.store import EventStore, open_store
from sandbox_agent.testing.support import subscription


def event_id_for(sequence: int) -> str:
    return f"e{sequence}"


#: How far behind the writer a slow subscriber waits to fall at each nap.
FALL_BEHIND = 1000


async def consume(store: EventStore, session_id: str, total: int, pace: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    last = 0
    problems: list[str] = []
    naps = 0.0
    lag = 0  # how far behind the stream's end the subscriber fell
    async with contextlib.aclosing(subscription(store, session_id)) as events:
        async for event in events:
            if event.sequence != last + 1 or event.event_id != event_id_for(event.sequence):
                problems.append(f"after {last}: got {event.sequence} {event.event_id}")
                if len(problems) > 20:
                    break
            last = event.sequence
            digest.update(f"{event.sequence}:{event.event_id};".encode())
            if pace == "slow" and (last == 1 or last % 2500 == 0):
                # Let the writer run far ahead (1,000 events, or to its end), however slowly
                # the driver writes: no time limit here (the caller's timeout is the bound).
                while True:
                    await asyncio.sleep(0.1)
                    naps += 0.1
                    ahead = await store.last_sequence(session_id)
                    if ahead - last >= FALL_BEHIND or ahead == total:
                        break
                lag = max(lag, ahead - last)
            if last == total:
                break
    return {
        "last": last,
        "problems": problems,
        "digest": digest.hexdigest(),
        "naps": naps,
        "lag": lag,
    }


def expected_digest(total: int) -> str:
    digest = hashlib.sha256()
    for sequence in range(1, total + 1):
        digest.update(f"{sequence}:{event_id_for(sequence)};".encode())
    return digest.hexdigest()


async def main(argv: list[str]) -> None:
    url, session_id, total, pace = argv[0], argv[1], int(argv[2]), argv[3]
    async with await open_store(url) as store:
        print("ready", flush=True)
        started = time.monotonic()
        async with asyncio.timeout(180):
            report = await consume(store, session_id, total, pace)
        report["seconds"] = time.monotonic() - started
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
