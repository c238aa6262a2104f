"""The request body limit, as an ASGI middleware: bodies over the limit get 413
``payload_too_large`` before any route sees them, whether or not they declare a length."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox_agent.server.errors import invalid_request, payload_too_large, problem_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


#: Routes that stream their bodies to disk under limits of their own (the fs API's).
STREAMED_PATHS = frozenset({"/v1/fs/file", "/v1/fs/upload-batch"})


class BodyLimit:
    """Reads the whole body (at most ``max_bytes``) before calling the app; the bodies of
    ``STREAMED_PATHS`` go through as they come."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or scope["path"] in STREAMED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await problem_response(invalid_request("bad Content-Length"))(
                        scope, receive, send
                    )
                    return
                if declared > self.max_bytes:
                    await problem_response(payload_too_large(self.max_bytes))(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await problem_response(payload_too_large(self.max_bytes))(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay_receive, send)


#: SSE: the events one stream takes from the store at a time, in bytes of stored JSON
#: (``store/tail.py``'s ``stored_bytes``; one event larger than this goes alone). A client that
#: stops reading holds one such page, decoded.
SSE_PAGE_BYTES = 256 * 1024
#: SSE: the most one socket write of a stream holds (one frame larger than this goes alone).
#: Each write is awaited and uvicorn pauses it while the socket's buffer is over its high-water
#: mark (64 KiB), so a stalled client holds at most about one write there.
SSE_WRITE_BYTES = 64 * 1024
#: SSE: what one stalled client costs the server at most, for events under ``SSE_PAGE_BYTES``
#: each: the page decoded (about twice its JSON), one write, the transport's buffer, the
#: stream's own state. ``tests/test_server_sse_memory.py`` holds the server to it.
SSE_CLIENT_BYTES = 1024 * 1024
#: SSE: an event larger than ``SSE_PAGE_BYTES`` costs a stalled client up to this many times its
#: stored size besides (its row as read, the event decoded, its frame).
SSE_LARGE_EVENT_COPIES = 3
