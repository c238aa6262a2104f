"""A trailing slash is the same path: ``/v1/sessions/`` is served as ``/v1/sessions``.

Starlette would answer 307 with a ``Location`` built from the request's ``Host`` header, which
a client controls (``Host: evil.example`` -> ``http://evil.example/v1/sessions``). Serving the
path without its slash needs no redirect at all."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class TrailingSlash:
    """ASGI middleware: strips the trailing slashes of every path but ``/``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
            if scope.get("raw_path"):
                scope["raw_path"] = scope["raw_path"].rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
