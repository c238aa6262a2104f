"""``/v1/sessions/{id}/events``: polling and SSE."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from sandbox_agent.api import EventsResponse
from sandbox_agent.server.responses import problems
from sandbox_agent.server.routes.deps import Config, Engine, IncludeRaw, SessionId, Stopping
from sandbox_agent.server.sse import event_stream, resume_after, sse_response
from sandbox_agent.store.records import MAX_SEQUENCE

router = APIRouter(prefix="/v1/sessions", tags=["events"])

Offset = Annotated[
    int, Query(ge=0, le=MAX_SEQUENCE, description="The last sequence seen (exclusive).")
]


@router.get("/{session_id}/events", response_model=EventsResponse, responses=problems(404))
async def list_events(
    session_id: SessionId,
    engine: Engine,
    include_raw: IncludeRaw,
    offset: Offset = 0,
    limit: Annotated[int | None, Query(ge=0, le=100_000)] = None,
) -> Response:
    """Stored events after ``offset``, at most ``limit``; ``hasMore`` when more are stored."""
    store = engine.store
    engine.check_served(session_id)  # a failed session: store_corrupt, not a shorter stream
    if limit == 0:
        has_more = await store.last_sequence(session_id) > offset
        return _events_response([], has_more)
    read = await store.read(session_id, after=offset, limit=None if limit is None else limit + 1)
    has_more = limit is not None and len(read) > limit
    events = read[:limit] if limit is not None else read
    return _events_response(
        [(e if include_raw else e.without_raw()).model_dump_json().encode() for e in events],
        has_more,
    )


def _events_response(events: list[bytes], has_more: bool) -> Response:
    """``EventsResponse`` written from each event's own JSON (pydantic's encoder, as in the SSE
    frames): no dict per event for FastAPI to validate and encode again (docs/performance.md,
    "Session 7: server")."""
    more = b"true" if has_more else b"false"
    body = b'{"events":[' + b",".join(events) + b'],"hasMore":' + more + b"}"
    return Response(body, media_type="application/json")


@router.get(
    "/{session_id}/events/sse",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **problems(404)},
)
async def stream_events(
    session_id: SessionId,
    request: Request,
    engine: Engine,
    config: Config,
    stopping: Stopping,
    include_raw: IncludeRaw,
    offset: Offset = 0,
) -> StreamingResponse:
    """Stored events after ``offset`` (or the ``Last-Event-ID`` header), then live ones."""
    engine.check_served(session_id)
    await engine.store.last_sequence(session_id)  # 404 before the stream starts
    stream = event_stream(
        engine.store,
        session_id,
        resume_after(request, offset),
        include_raw=include_raw,
        ping_seconds=config.sse_ping_seconds,
        stop=stopping,
    )
    return sse_response(stream)
