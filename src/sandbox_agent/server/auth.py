"""Token auth: an ASGI middleware guarding every route but the public ones.

Accepted ``Authorization`` forms (scheme case-insensitive, as v0.1): ``Bearer <token>``,
``Token <token>``, and ``Basic <base64>`` whose password (or whole value, without a colon) is
the token. Comparison is constant-time. Missing and wrong tokens get the same 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox_agent.server.errors import problem_response, token_invalid

#: Paths anyone may GET.
PUBLIC_PATHS = frozenset({"/", "/v1/health", "/ui", "/ui/"})
#: Path prefixes anyone may GET: the inspector's pages and assets, which hold no data (the page
#: asks for the token, then reads ``/ui/api/...`` with it).
PUBLIC_PREFIXES = ("/ui/s/", "/ui/static/")


def token_from_header(value: str) -> str | None:
    """The token an ``Authorization`` header carries, or None."""
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        return rest or None
    if scheme == "basic":
        decoded = _decode_basic(rest)
        if decoded is None:
            return None
        return decoded.partition(":")[2] if ":" in decoded else decoded
    return None


def _decode_basic(value: str) -> str | None:
    padded = value + "=" * (-len(value) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(padded.encode("ascii")).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeError):
            continue
    return None


class TokenAuth:
    """Answers 401 ``token_invalid`` unless the request carries ``token``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await problem_response(token_invalid(), {"WWW-Authenticate": "Bearer"})(
            scope, receive, send
        )

    def _allowed(self, scope: Scope) -> bool:
        if scope["method"] in ("GET", "HEAD") and (
            scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIXES)
        ):
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = token_from_header(value.decode("latin-1"))
                if token is not None and hmac.compare_digest(token.encode("utf-8"), self._token):
                    return True
        return False
