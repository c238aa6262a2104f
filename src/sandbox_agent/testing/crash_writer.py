"""Kill writers with SIGKILL in the middle of their appends, many times over.

    python -m sandbox_agent.testing.crash_writer URL SESSION TRIALS SEED

This process imports the store once, then for each trial forks a writer child (cheap: no
interpreter start-up, so a trial takes milliseconds). The child opens the store with the
real driver, first retries the batch that was in flight when the previous child was killed,
then appends batches in a loop, writing ``begin K`` before and ``ack K`` after each
``append`` to a pipe. This process reads those lines, kills the child with SIGKILL at a
random moment, and records what the child had acknowledged. (A batch counts as begun from
the moment its predecessor is acknowledged.) At the end it prints one JSON
line: ``{"trials": [{"acked": [...], "in_flight": K or null, "opened": bool}], "next": K}``.

Batch K is always the same events (ids, payloads, times), so a retry is byte-for-byte
equal: ``batch_drafts(K)``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox_agent.events import EventDraft
from sandbox_agent.store import open_store
from sandbox_agent.testing.children import kill_after

BASE_TIME = datetime(2030, 1, 1, tzinfo=UTC)


def batch_size(k: int) -> int:
    return 1 + k % 7


def batch_drafts(k: int) -> list[EventDraft]:
    return [
        EventDraft(
            type="item.delta",
            data={"item_id": f"b{k}", "delta": f"{j}:" + "x" * 300},
            event_id=f"b{k}/{j}",
            time=BASE_TIME + timedelta(milliseconds=k, microseconds=j),
        )
        for j in range(batch_size(k))
    ]


async def write(url: str, session_id: str, retry: int | None, first: int, out: int) -> None:
    def say(line: str) -> None:
        os.write(out, f"{line}\n".encode())  # unbuffered; one short write is atomic on a pipe

    # An ack and the next begin go in one write: appends are fast, and a kill between two
    # writes would land outside any append (the trials want most kills inside one).
    async with await open_store(url) as store:
        say(f"open\nbegin {first if retry is None else retry}")
        if retry is not None:
            await store.append(session_id, batch_drafts(retry))
            say(f"ack {retry}\nbegin {first}")
        k = first
        while True:
            await store.append(session_id, batch_drafts(k))
            say(f"ack {k}\nbegin {k + 1}")
            k += 1


def child(url: str, session_id: str, retry: int | None, first: int, out: int) -> None:
    try:
        asyncio.run(write(url, session_id, retry, first, out))
    except BaseException as exc:  # report, then leave without running the parent's cleanup
        os.write(out, f"error {exc!r}\n".replace("\n", " ").encode() + b"\n")
    finally:
        os._exit(1)


def trial(
    url: str, session_id: str, retry: int | None, first: int, rng: random.Random
) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        child(url, session_id, retry, first, write_end)
    os.close(write_end)
    # Mostly kill while appending (after the store is open); sometimes while it opens.
    after_open = rng.random() < 0.85
    seen = kill_after(
        pid,
        read_end,
        rng.uniform(0, 0.08 if after_open else 0.25),
        started=_opened if after_open else None,
        never_started="writer never opened the store",
    )
    lines = [line.decode() for line in seen.split(b"\n") if line]
    errors = [line for line in lines if line.startswith("error")]
    if errors:
        raise SystemExit(f"writer failed: {errors[0]}")
    begun = [int(line.split()[1]) for line in lines if line.startswith("begin")]
    acked = [int(line.split()[1]) for line in lines if line.startswith("ack")]
    in_flight = begun[-1] if begun and (not acked or acked[-1] != begun[-1]) else None
    return {"acked": acked, "in_flight": in_flight, "opened": "open" in lines, "begun": begun}


def _opened(seen: bytes) -> bool:
    return seen.startswith(b"open\n")


async def warm_up(url: str) -> None:
    # Open and close once here, so that the forked writers find the driver's lazily imported
    # modules loaded and spend their time appending, not importing.
    async with await open_store(url):
        pass


def main(argv: list[str]) -> None:
    url, session_id, trials, seed = argv[0], argv[1], int(argv[2]), int(argv[3])
    rng = random.Random(seed)
    asyncio.run(warm_up(url))
    results = []
    retry: int | None = None
    first = 0
    for _ in range(trials):
        result = trial(url, session_id, retry, first, rng)
        results.append(result)
        if result["begun"]:
            first = max(first, max(result["begun"]) + 1)
        # A batch in flight, or one that was to be retried but never got to be, is retried.
        retry = (
            result["in_flight"]
            if result["in_flight"] is not None
            else (retry if not result["begun"] else None)
        )
    print(json.dumps({"trials": results, "next": first, "retry": retry}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
