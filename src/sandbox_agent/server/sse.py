"""Server-sent events served from the store's ``subscribe``.

Framing: ``id: <sequence>``, ``data: <UniversalEvent JSON>``, a blank line (the default
``message`` event, for ``EventSource.onmessage`` and v0.1 clients); a ``: ping`` comment after
``ping_seconds`` without an event. Events are read from the store as the client consumes them,
so a slow client is never dropped events and the server never buffers more than one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from sandbox_agent.events import UniversalEvent
from sandbox_agent.store import EventStore, StoreError
from sandbox_agent.store.records import MAX_SEQUENCE

#: Event types that end a ``messages/stream`` response (v0.1).
TERMINAL_TYPES = frozenset(
    {
        "turn.ended",
        "session.ended",
        "error",
        "agent.unparsed",
        "permission.requested",
        "question.requested",
    }
)

PING = b": ping\n\n"


def resume_after(request: Request, offset: int) -> int:
    """Where a stream starts: after ``Last-Event-ID`` when the client sent one, else ``offset``."""
    value = request.headers.get("last-event-id")
    if value is not None and value.strip().isdigit():
        return min(int(value.strip()), MAX_SEQUENCE)  # beyond any sequence: nothing stored
    return offset


#: Frames recently built, so that N subscribers of a session serialise each event once: at
#: most this many, of at most ``FRAME_CACHE_MAX_BYTES`` each (8 MB in all).
FRAME_CACHE_SIZE = 1024
FRAME_CACHE_MAX_BYTES = 8192
_frames: dict[tuple[str, int, str, bool], bytes] = {}


def frame(event: UniversalEvent, include_raw: bool) -> bytes:
    # The session, sequence and event id together name one stored event (a session deleted and
    # made again reuses sequences, not event ids).
    key = (event.session_id, event.sequence, event.event_id, include_raw)
    cached = _frames.get(key)
    if cached is not None:
        return cached
    shown = event if include_raw else event.without_raw()
    # pydantic's serializer writes the same compact UTF-8 JSON as json.dumps(model_dump()), at
    # less than half the cost.
    data = shown.model_dump_json()
    built = f"id: {event.sequence}\ndata: {data}\n\n".encode()
    if len(built) <= FRAME_CACHE_MAX_BYTES:
        _frames[key] = built
        if len(_frames) > FRAME_CACHE_SIZE:
            del _frames[next(iter(_frames))]  # the oldest
    return built


async def event_stream(
    store: EventStore,
    session_id: str,
    after: int,
    *,
    include_raw: bool,
    ping_seconds: float,
    stop: asyncio.Event,
    until: Callable[[UniversalEvent], bool] | None = None,
) -> AsyncIterator[bytes]:
    """SSE frames of the session's events after ``after``, then live ones; ends when ``until``
    says so (after sending that event), when the session is deleted, the store closes or the
    server stops. The frames of one batch of the store (what one commit, or one read, gave) go
    out as one chunk: one socket write, not one per event."""
    batches = store.subscribe_batches(session_id, after=after)
    stopping = asyncio.ensure_future(stop.wait())
    next_batch: asyncio.Future[list[UniversalEvent]] | None = None
    try:
        yield b": connected\n\n"
        while True:
            if next_batch is None:
                next_batch = asyncio.ensure_future(anext(batches))
            waiting: set[asyncio.Future[Any]] = {next_batch, stopping}
            done, _ = await asyncio.wait(
                waiting, timeout=ping_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if next_batch in done:
                future, next_batch = next_batch, None
                try:
                    batch = future.result()
                except (StopAsyncIteration, StoreError):
                    return
                if until is not None:
                    end = next((n for n, event in enumerate(batch, 1) if until(event)), None)
                    if end is not None:
                        yield b"".join(frame(event, include_raw) for event in batch[:end])
                        return
                yield b"".join(frame(event, include_raw) for event in batch)
            elif stopping in done:
                return
            else:
                yield PING
    finally:
        stopping.cancel()
        if next_batch is not None:
            next_batch.cancel()
            with contextlib.suppress(BaseException):
                await next_batch
        with contextlib.suppress(BaseException):
            await batches.aclose()


def sse_response(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
