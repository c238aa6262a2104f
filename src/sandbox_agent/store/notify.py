"""In-process wake-ups for ``subscribe``: one waiter per session, set on every commit."""

from __future__ import annotations

import asyncio
import contextlib


class ChangeNotifier:
    """Wakes the subscribers of a session after an append commits.

    A subscriber takes its waiter *before* it reads, so a commit that lands between its read and
    its wait still wakes it (no lost wake-ups).
    """

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Event] = {}
        self._any = asyncio.Event()

    def waiter(self, session_id: str) -> asyncio.Event:
        event = self._waiters.get(session_id)
        if event is None:
            event = self._waiters[session_id] = asyncio.Event()
        return event

    def any_waiter(self) -> asyncio.Event:
        return self._any

    def notify(self, session_id: str) -> None:
        event = self._waiters.pop(session_id, None)
        if event is not None:
            event.set()
        self._any.set()
        self._any = asyncio.Event()

    def notify_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for event in waiters.values():
            event.set()
        self._any.set()
        self._any = asyncio.Event()


async def wait_for(event: asyncio.Event, timeout: float | None) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds pass (None: forever)."""
    if timeout is None:
        await event.wait()
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
