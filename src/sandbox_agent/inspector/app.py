"""The inspector's web app (Starlette), built from an ``EventStore`` and optional live hooks.

Pages are shells without data (the server lets them through its token check, so that the page
can ask for the token); the data comes from ``/api/...`` as HTML fragments rendered here by
Jinja with autoescape, which the page's script inserts. Every response carries a strict
Content-Security-Policy: only the package's own script and style run, nothing inline.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from jinja2 import Environment
from sandbox_agent.inspector.views import (
    anomaly_count,
    at_view,
    diff_view,
    events_page,
    list_page,
)
from sandbox_agent.replay import SequencePastEnd, check_session, state_at
from sandbox_agent.store import (
    EventStore,
    InvalidCursor,
    SessionExists,
    SessionNotFound,
    StoreError,
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC = {"inspector.js": "text/javascript", "inspector.css": "text/css"}
#: Anomaly counts the list keeps (by session and last sequence: a new event makes a new entry).
ANOMALY_CACHE = 10_000
#: The longest id a fork may take (the server's own limit for session ids).
MAX_ID = 256
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,256}$")


@dataclass(frozen=True)
class Options:
    """How the inspector is served.

    ``base``: the path it is mounted at ("" at the root). ``live``: a server runs the sessions
    (the page offers prompt, cancel and answers over ``/v1``). ``writable``: the page may fork.
    ``fork_url``: the fork route, ``{id}`` for the session (default: the inspector's own).
    """

    base: str = ""
    live: bool = False
    writable: bool = False
    fork_url: str | None = None


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def problem(exc: ProblemError) -> Response:
    body = {"type": "about:blank", "title": exc.title, "status": exc.status, "detail": exc.detail}
    return Response(
        json.dumps(body),
        status_code=exc.status,
        media_type="application/problem+json",
        headers=SECURITY_HEADERS,
    )


def _time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, default=str)


def _arguments(text: str) -> str:
    try:
        return _pretty(json.loads(text))
    except (ValueError, TypeError):
        return text


def environment() -> Environment:
    """Jinja with autoescape on for every template (imported on the first page served: a
    server whose inspector nobody opens does not hold it)."""
    from jinja2 import Environment, PackageLoader
    from markupsafe import Markup

    from sandbox_agent.inspector.markdown import render_markdown

    env = Environment(
        loader=PackageLoader("sandbox_agent.inspector", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["markdown"] = lambda text: Markup(render_markdown(str(text or "")))
    env.filters["time"] = _time
    env.filters["pretty"] = _pretty
    env.filters["arguments"] = _arguments
    env.filters["shellquote"] = lambda value: shlex.quote(str(value))
    # Not Jinja's tojson: its Markup leaves '"' unescaped, which ends a double-quoted attribute.
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def _int(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProblemError(
            400, "Invalid request", f"{name} must be an integer, got {raw!r}"
        ) from None
    if value < 0:
        raise ProblemError(400, "Invalid request", f"{name} must be >= 0, got {value}")
    return value


class Inspector:
    """The inspector over ``store`` (a callable: the server opens its store at start-up)."""

    def __init__(self, store: Callable[[], EventStore], options: Options | None = None) -> None:
        self._store = store
        self.options = options or Options()
        self._env: Environment | None = None
        #: (session, last sequence) -> its anomaly count, for the list (bounded, oldest out).
        self._anomalies: dict[tuple[str, int], int] = {}

    @property
    def env(self) -> Environment:
        if self._env is None:
            self._env = environment()
        return self._env

    @property
    def store(self) -> EventStore:
        return self._store()

    def app(self) -> Starlette:
        guard = self._guard
        return Starlette(
            routes=[
                Route("/", guard(self.index)),
                Route("/s/{session_id:path}", guard(self.session_page)),
                Route("/static/{name}", guard(self.static)),
                Route("/api/sessions", guard(self.api_sessions)),
                Route("/api/sessions/{session_id}/at", guard(self.api_at)),
                Route("/api/sessions/{session_id}/state.json", guard(self.api_state_json)),
                Route("/api/sessions/{session_id}/events", guard(self.api_events)),
                Route("/api/sessions/{session_id}/diff", guard(self.api_diff)),
                Route("/api/sessions/{session_id}/check", guard(self.api_check)),
                Route("/api/sessions/{session_id}/anomalies", guard(self.api_anomalies)),
                Route("/api/sessions/{session_id}/follow", guard(self.api_follow)),
                Route("/api/sessions/{session_id}/fork", guard(self.api_fork), methods=["POST"]),
            ]
        )

    def index_route(self, path: str) -> Route:
        """The list page at ``path`` (the server serves ``/ui`` itself: a mount needs ``/ui/``)."""
        return Route(path, self._guard(self.index))

    def _guard(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def guarded(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except ProblemError as exc:
                return problem(exc)
            except SessionNotFound as exc:
                return problem(ProblemError(404, "Session not found", str(exc)))
            except SequencePastEnd as exc:
                return problem(ProblemError(400, "Sequence past the end", str(exc)))
            except InvalidCursor as exc:
                return problem(ProblemError(400, "Invalid cursor", str(exc)))
            except StoreError as exc:
                return problem(ProblemError(503, "Store unavailable", str(exc)))
            response.headers.update(SECURITY_HEADERS)
            return response

        return guarded

    def _html(self, template: str, **context: Any) -> Response:
        body = self.env.get_template(template).render(options=self.options, **context)
        return Response(body, media_type="text/html; charset=utf-8")

    def _fragment(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(options=self.options, **context)

    # -- pages (no data: the script fetches it with the token) ------------------------------
    async def index(self, request: Request) -> Response:
        return self._html("list.html")

    async def session_page(self, request: Request) -> Response:
        return self._html("session.html", session_id=request.path_params["session_id"])

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            raise ProblemError(404, "Not found", f"no static file {name!r}")
        body = resources.files("sandbox_agent.inspector").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name])

    # -- data ----------------------------------------------------------------------------
    async def api_sessions(self, request: Request) -> Response:
        params = request.query_params
        status = params.get("status") or None
        if status not in (None, "active", "ended"):
            raise ProblemError(
                400, "Invalid request", f"status must be active or ended: {status!r}"
            )
        page = await list_page(
            self.store,
            params.get("cursor") or None,
            status,  # type: ignore[arg-type]
            params.get("agent") or None,
            (params.get("q") or "").strip(),
        )
        html = self._fragment("rows.html", rows=page.rows)
        return JSONResponse({"html": html, "nextCursor": page.next_cursor, "count": len(page.rows)})

    async def _last(self, session_id: str) -> int:
        return await self.store.last_sequence(session_id)

    async def api_at(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        record = await self.store.get_session(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        at = _int(request, "seq")
        view = await at_view(self.store, session_id, at)
        return JSONResponse(
            {
                "sequence": view.state.last_sequence,
                "lastSequence": record.last_sequence,
                "status": record.status,
                "transcript": self._fragment("transcript.html", view=view),
                "state": self._fragment("state.html", view=view, record=record),
                "header": self._fragment("header.html", record=record, view=view),
                "anomalies": [a.model_dump() for a in view.state.anomalies],
                "types": sorted(view.state.counts),
            }
        )

    async def api_state_json(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        state = await state_at(self.store, session_id, _int(request, "seq"))
        return Response(state.to_json_text(), media_type="application/json")

    async def api_events(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        after = _int(request, "after", 0) or 0
        types = {t for t in (request.query_params.get("types") or "").split(",") if t}
        page = await events_page(self.store, session_id, after, types)
        anomalies = {
            int(s) for s in (request.query_params.get("marks") or "").split(",") if s.isdigit()
        }
        html = self._fragment("events.html", rows=page.rows, marks=anomalies)
        return JSONResponse(
            {"html": html, "nextAfter": page.next_after, "end": page.end, "count": len(page.rows)}
        )

    async def api_diff(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        a, b = _int(request, "a", 0), _int(request, "b")
        if b is None:
            b = await self._last(session_id)
        assert a is not None
        result = await diff_view(self.store, session_id, a, b)
        return JSONResponse({"html": self._fragment("diff.html", diff=result)})

    async def api_anomalies(self, request: Request) -> Response:
        """The reducer's anomaly count of the session, for its row in the list (each row asks
        on its own, so that the list paints at once whatever its sessions' lengths)."""
        session_id = request.path_params["session_id"]
        record = await self.store.get_session(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        key = (session_id, record.last_sequence)
        count = self._anomalies.get(key)
        if count is None:
            count = await anomaly_count(self.store, record)
            if len(self._anomalies) >= ANOMALY_CACHE:
                del self._anomalies[next(iter(self._anomalies))]
            self._anomalies[key] = count
        return JSONResponse({"count": count, "lastSequence": record.last_sequence})

    async def api_check(self, request: Request) -> Response:
        """The replay check: a full replay (no snapshot trusted) plus the store's own findings."""
        session_id = request.path_params["session_id"]
        state = await check_session(self.store, session_id)
        return JSONResponse({"anomalies": [a.model_dump() for a in state.anomalies]})

    async def api_follow(self, request: Request) -> Response:
        """Server-sent events of the session after ``after``: one ``data:`` line per event
        (its JSON), as ``/v1/sessions/{id}/events/sse`` sends them."""
        session_id = request.path_params["session_id"]
        after = _int(request, "after", 0) or 0
        await self._last(session_id)  # 404 before the stream starts
        store = self.store

        async def stream() -> AsyncIterator[bytes]:
            yield b": following\n\n"
            batches = store.subscribe_batches(session_id, after)
            try:
                while True:
                    try:
                        batch = await asyncio.wait_for(anext(batches), 15)
                    except TimeoutError:
                        yield b": ping\n\n"
                        continue
                    except StopAsyncIteration:
                        return
                    for event in batch:
                        body = event.model_dump_json(exclude={"raw"})
                        yield f"id: {event.sequence}\ndata: {body}\n\n".encode()
            finally:
                await batches.aclose()

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def api_fork(self, request: Request) -> Response:
        if not self.options.writable:
            raise ProblemError(403, "Read-only", "this inspector is read-only (inspect --writable)")
        session_id = request.path_params["session_id"]
        try:
            body = await request.json()
        except ValueError:
            raise ProblemError(400, "Invalid request", "the body must be JSON") from None
        if not isinstance(body, dict):
            raise ProblemError(400, "Invalid request", "the body must be a JSON object")
        new_id, at = body.get("sessionId"), body.get("at")
        if not isinstance(new_id, str) or not _ID.match(new_id):
            raise ProblemError(400, "Invalid request", "sessionId: 1-256 of A-Z a-z 0-9 . _ : -")
        if at is not None and (not isinstance(at, int) or isinstance(at, bool) or at < 0):
            raise ProblemError(400, "Invalid request", "at must be an integer >= 0")
        try:
            record = await self.store.fork_session(session_id, new_id, at)
        except SessionExists:
            raise ProblemError(
                409, "Session exists", f"session {new_id!r} already exists"
            ) from None
        return JSONResponse(
            {"sessionId": record.id, "lastSequence": record.last_sequence}, status_code=201
        )


def build_inspector(
    store: EventStore | Callable[[], EventStore], options: Options | None = None
) -> Inspector:
    """The inspector over ``store`` (or a callable returning it, for a store opened later)."""
    if isinstance(store, EventStore):
        opened = store
        return Inspector(lambda: opened, options)
    return Inspector(store, options)
