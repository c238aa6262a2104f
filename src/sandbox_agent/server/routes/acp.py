"""``/v1/acp``: upstream's ACP endpoint (v0.2+), served from the store (``docs/acp.md``).

Thin: content negotiation and the HTTP shapes here; the servers, their agents and their streams
are ``sessions/acp_endpoint.py``'s.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from sandbox_agent.events import UniversalEvent
from sandbox_agent.server.errors import invalid_request, not_acceptable, unsupported_media_type
from sandbox_agent.server.responses import problems
from sandbox_agent.server.routes.deps import Config, Stopping
from sandbox_agent.server.sse import event_stream, resume_after, sse_response
from sandbox_agent.sessions.acp_endpoint import ACP_MESSAGE, AcpEndpoint

router = APIRouter(prefix="/v1/acp", tags=["acp"])

HEARTBEAT = b": heartbeat\n\n"


async def get_acp(request: Request) -> AcpEndpoint:
    endpoint: AcpEndpoint = request.app.state.acp
    return endpoint


def _media_types(header: str) -> list[str]:
    """The media ranges of an ``Accept`` header, without parameters; q=0 ones left out."""
    ranges = []
    for part in header.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if media:
            ranges.append(media.lower())
    return ranges


def accepts(request: Request, media_type: str) -> bool:
    """Whether the request's ``Accept`` allows ``media_type`` (no header: anything)."""
    header = request.headers.get("accept")
    if header is None or not header.strip():
        return True
    kind = media_type.split("/")[0]
    allowed = {media_type, "*/*", f"{kind}/*"}
    return any(m in allowed for m in _media_types(header))


@router.get("", responses=problems())
async def list_servers(request: Request) -> dict[str, Any]:
    """``{"servers": [{serverId, agent, createdAtMs}]}``, by server id."""
    endpoint = await get_acp(request)
    return {
        "servers": [
            {
                "serverId": s.server_id,
                "agent": s.agent,
                "createdAtMs": int(s.created_at.timestamp() * 1000),
            }
            for s in endpoint.servers()
        ]
    }


@router.post(
    "/{server_id}",
    responses={
        202: {"description": "a notification or response, relayed"},
        **problems(404, 406, 409, 415, 504),
    },
)
async def post_message(
    server_id: str,
    request: Request,
    agent: Annotated[str | None, Query(description="The agent (first POST only).")] = None,
) -> Response:
    """One JSON-RPC envelope: a request -> 200 with the agent's response; a notification or a
    response to the agent -> 202."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise unsupported_media_type(
            f"Content-Type must be application/json, not {content_type or 'none'}"
        )
    if not accepts(request, "application/json"):
        raise not_acceptable("Accept must allow application/json")
    try:
        message = json.loads(await request.body())
    except ValueError as exc:
        raise invalid_request(f"body is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise invalid_request("body must be one JSON-RPC envelope (a JSON object)")
    endpoint = await get_acp(request)
    answer = await endpoint.post(server_id, agent or None, message)
    if answer is None:
        return Response(status_code=202)
    return JSONResponse(answer)


def _acp_frame(event: UniversalEvent) -> bytes | None:
    """``event: message``, ``id: <sequence>``, ``data: <envelope>`` for what the agent wrote;
    nothing for the rest of the stream."""
    data = event.data
    if event.type != ACP_MESSAGE or data.get("direction") != "agent" or data.get("restore"):
        return None
    text = json.dumps(data.get("message"), separators=(",", ":"), ensure_ascii=False)
    return f"event: message\nid: {event.sequence}\ndata: {text}\n\n".encode()


@router.get(
    "/{server_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **problems(404, 406)},
)
async def stream(
    server_id: str, request: Request, config: Config, stopping: Stopping
) -> StreamingResponse:
    """What the agent wrote, from the store: after ``Last-Event-ID`` (all of it without), then
    live; ``: heartbeat`` comments while idle."""
    if not accepts(request, "text/event-stream"):
        raise not_acceptable("Accept must allow text/event-stream")
    last = request.headers.get("last-event-id")
    if last is not None and not last.strip().isdigit():
        raise invalid_request("Last-Event-ID must be a positive integer")
    after = resume_after(request, 0)
    endpoint = await get_acp(request)
    server = endpoint.get(server_id)
    frames = event_stream(
        endpoint.store,
        server.info.session_id,
        after,
        include_raw=False,
        ping_seconds=config.sse_ping_seconds,
        stop=stopping,
        until=lambda event: event.type == "session.ended",
        framer=_acp_frame,
        ping=HEARTBEAT,
    )
    return sse_response(frames)


@router.delete("/{server_id}", status_code=204, responses=problems())
async def close(server_id: str, request: Request) -> Response:
    """Stop the server's agent and end its stream; 204 also when there was no such server."""
    endpoint = await get_acp(request)
    await endpoint.delete(server_id)
    return Response(status_code=204)
