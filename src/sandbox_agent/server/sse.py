"""Server-sent events served from the store's ``subscribe``.

Framing: ``id: <sequence>``, ``data: <UniversalEvent JSON>``, a blank line (the default
``message`` event, for ``EventSource.onmessage`` and v0.1 clients); a ``: ping`` comment after
``ping_seconds`` without an event. Events are read from the store as the client consumes them,
so a slow client is never dropped events.

Memory per client is bounded (``server/limits.py``): the store gives at most ``SSE_PAGE_BYTES``
of events at a time, and their frames go out in writes of at most ``SSE_WRITE_BYTES``, each
awaited: uvicorn pauses a write until the socket drains below its high-water mark, so a client
that stops reading stops its stream where it is, holding one page and one write.

A stream that fails (the store fails while it reads, anything unexpected) ends with an
``event: error`` frame whose data is the problem JSON (``server/errors.py``), then the end of
the chunked body: never a cut chunk. A deleted session, the store closing and the server
stopping end it without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from sandbox_agent.events import UniversalEvent
from sandbox_agent.server.errors import as_api_error
from sandbox_agent.server.limits import SSE_PAGE_BYTES, SSE_WRITE_BYTES
from sandbox_agent.store import EventStore, SessionNotFound
from sandbox_agent.store.records import MAX_SEQUENCE

logger = logging.getLogger(__name__)

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


def error_frame(exc: Exception) -> bytes:
    """The last frame of a stream that failed: ``event: error`` with the problem JSON (no
    ``id``, so that a client resumes after the last event it got)."""
    body = json.dumps(as_api_error(exc).body(), separators=(",", ":"), ensure_ascii=False)
    return f"event: error\ndata: {body}\n\n".encode()


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


#: Builds an event's frame, or None to leave the event out (the ACP stream's own framing).
Framer = Callable[[UniversalEvent], bytes | None]


def writes(
    events: Sequence[UniversalEvent], include_raw: bool, framer: Framer | None = None
) -> Iterator[bytes]:
    """The frames of ``events`` in writes of at most ``SSE_WRITE_BYTES``, each built when the
    one before has gone out: small frames joined, a larger frame in slices (so that the
    socket's buffer never holds a copy of a whole large event)."""
    parts: list[bytes] = []
    size = 0
    for event in events:
        data = frame(event, include_raw) if framer is None else framer(event)
        if data is None:
            continue
        if parts and size + len(data) > SSE_WRITE_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
        if len(data) > SSE_WRITE_BYTES:
            for start in range(0, len(data), SSE_WRITE_BYTES):
                yield data[start : start + SSE_WRITE_BYTES]
            continue
        parts.append(data)
        size += len(data)
    if parts:
        yield b"".join(parts)


async def event_stream(
    store: EventStore,
    session_id: str,
    after: int,
    *,
    include_raw: bool,
    ping_seconds: float,
    stop: asyncio.Event,
    until: Callable[[UniversalEvent], bool] | None = None,
    framer: Framer | None = None,
    ping: bytes = PING,
) -> AsyncIterator[bytes]:
    """SSE frames of the session's events after ``after``, then live ones; ends when ``until``
    says so (after sending that event), when the session is deleted, the store closes or the
    server stops, and with an ``error_frame`` when the store (or anything else) fails. A batch
    of the store (what one commit, or one read, gave: at most ``SSE_PAGE_BYTES``) goes out in
    ``writes``: a few socket writes, not one per event nor one unbounded one. ``framer`` and
    ``ping`` replace the frames and the keep-alive comment (the ACP stream's)."""
    batches = store.subscribe_batches(session_id, after=after, max_bytes=SSE_PAGE_BYTES)
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
                except (StopAsyncIteration, SessionNotFound):
                    return
                end = None
                if until is not None:
                    end = next((n for n, event in enumerate(batch, 1) if until(event)), None)
                for chunk in writes(batch[:end], include_raw, framer):
                    yield chunk
                    if stop.is_set():
                        return
                if end is not None:
                    return
            elif stopping in done:
                return
            else:
                yield ping
    except Exception as exc:
        # The client gets the problem and a proper end of the body, not a cut chunk.
        logger.warning("SSE stream of session %s failed: %r", session_id, exc)
        yield error_frame(exc)
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
