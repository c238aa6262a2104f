"""The request body limit, as an ASGI middleware: bodies over the limit get 413
``payload_too_large`` before any route sees them, whether or not they declare a length."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox_agent.server.errors import invalid_request, payload_too_large, problem_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyLimit:
    """Reads the whole body (at most ``max_bytes``) before calling the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
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
