"""Faults on demand, to test what a backend does when things break.

- ``FaultyStore(store)``: an ``EventStore`` over the same data as ``store`` that fails the
  calls you choose (``StoreUnavailable`` or any ``StoreError``), slows them down, or SIGKILLs
  the process right after a commit. It wraps the store's driver (``FaultyDriver``), so every
  ``EventStore`` behaviour above the driver (validation, retries, subscribe) is the real one.
- ``FaultyTransport()``: an httpx async transport that drops requests (before or after the
  server saw them) and cuts response bodies after N bytes or at the moment you say; pass it as
  ``SandboxAgent.connect(url, transport=...)``.
- ``CuttingProxy(port)``: a TCP proxy on 127.0.0.1 that resets every open connection on
  ``cut()``, in front of a server or a database (Postgres, MySQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import httpx

__all__ = [
    "CuttingProxy",
    "FaultyTransport",
]


# -- TCP ----------------------------------------------------------------------------------------
class CuttingProxy:
    """A TCP proxy from ``127.0.0.1:<port>`` (a free port, known after ``start()``) to
    ``target_host:target_port``; ``cut()`` resets every open connection (both sides), as a
    network failure would. New connections go through again after a cut.

    In front of a server: ``SandboxAgent.connect(proxy.url)``. In front of Postgres::

        async with CuttingProxy(5432) as proxy:
            store = await open_store(f"postgresql://postgres@127.0.0.1:{proxy.port}/test")
            ...
            proxy.cut()  # the store's connections die; what does your code do?
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        #: How many times ``cut()`` was called.
        self.cuts = 0
        #: How many connections were accepted.
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.transport.abort()

    def cut(self) -> int:
        """Reset every open connection; returns how many there were."""
        pairs = list(self._pairs)
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        self.cuts += 1
        return len(pairs)

    async def close(self) -> None:
        """Cut everything and stop listening."""
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


# -- HTTP ---------------------------------------------------------------------------------------
@dataclass
class _Rule:
    """One planned fault for the requests that ``matches``."""

    kind: str  # "drop" (before sending), "lose" (after the server answered), "cut" (the body)
    matches: Callable[[httpx.Request], bool]
    times: int | None  # None: every matching request
    after_bytes: int = 0

    def take(self, request: httpx.Request) -> bool:
        if self.times == 0 or not self.matches(request):
            return False
        if self.times is not None:
            self.times -= 1
        return True


@dataclass(eq=False)
class _Open:
    """A response body being read, which ``cut_streams()`` can end at once."""

    request: httpx.Request
    cut: asyncio.Event = field(default_factory=asyncio.Event)


class FaultyTransport(httpx.AsyncBaseTransport):
    """An httpx async transport (over ``httpx.AsyncHTTPTransport()`` unless ``inner`` is given)
    with faults on demand. Requests are chosen by ``method`` and a regular expression searched
    in the URL path (``path``; any when None); ``times=None`` means every matching request.

    - ``drop(...)``: the request fails with ``httpx.ConnectError`` before it is sent;
    - ``lose_response(...)``: the request is sent and answered, then fails with
      ``httpx.ReadError``: the server did it, the client does not know;
    - ``cut_response(..., after_bytes=N)``: the body ends with ``httpx.ReadError`` after ``N``
      bytes (streams such as SSE included);
    - ``cut_streams()``: every body being read now ends with ``httpx.ReadError``, at once.

    ``requests`` records ``(method, path)`` of every request; ``faults`` each fault applied as
    ``(kind, method, path)``. ``clear()`` removes the planned faults.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, str]] = []
        self.faults: list[tuple[str, str, str]] = []
        self._rules: list[_Rule] = []
        self._open: set[_Open] = set()

    # -- planning ---------------------------------------------------------------------------
    def drop(
        self, path: str | None = None, *, method: str | None = None, times: int | None = 1
    ) -> Self:
        """Fail matching requests with ``httpx.ConnectError``, unsent."""
        return self._plan("drop", path, method, times)

    def lose_response(
        self, path: str | None = None, *, method: str | None = None, times: int | None = 1
    ) -> Self:
        """Send matching requests, then fail them with ``httpx.ReadError``: the server acted
        on them, the client never sees the answer."""
        return self._plan("lose", path, method, times)

    def cut_response(
        self,
        path: str | None = None,
        *,
        after_bytes: int = 0,
        method: str | None = None,
        times: int | None = 1,
    ) -> Self:
        """End the bodies of matching responses with ``httpx.ReadError`` after ``after_bytes``
        bytes (the status and headers arrive)."""
        return self._plan("cut", path, method, times, after_bytes)

    def cut_streams(self) -> int:
        """End every response body being read now with ``httpx.ReadError`` (a follower's SSE
        stream, say), as a dropped connection would; returns how many there were."""
        for body in self._open:
            body.cut.set()
        return len(self._open)

    def clear(self) -> None:
        """Forget the planned faults (those already applied stay in ``faults``)."""
        self._rules.clear()

    def _plan(
        self, kind: str, path: str | None, method: str | None, times: int | None, after: int = 0
    ) -> Self:
        pattern = re.compile(path) if path is not None else None
        verb = method.upper() if method is not None else None

        def matches(request: httpx.Request) -> bool:
            if verb is not None and request.method != verb:
                return False
            return pattern is None or pattern.search(request.url.path) is not None

        self._rules.append(_Rule(kind, matches, times, after))
        return self

    def _fault(self, request: httpx.Request, kinds: tuple[str, ...]) -> _Rule | None:
        for rule in self._rules:
            if rule.kind in kinds and rule.take(request):
                self.faults.append((rule.kind, request.method, request.url.path))
                return rule
        return None

    # -- the transport ----------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if self._fault(request, ("drop",)) is not None:
            raise httpx.ConnectError("connection dropped by FaultyTransport", request=request)
        response = await self.inner.handle_async_request(request)
        if self._fault(request, ("lose",)) is not None:
            await response.aclose()
            raise httpx.ReadError("response lost by FaultyTransport", request=request)
        rule = self._fault(request, ("cut",))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        body = _CutStream(self, request, response.stream, rule.after_bytes if rule else None)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=body,
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CutStream(httpx.AsyncByteStream):
    """A response body that ends with ``httpx.ReadError`` after ``limit`` bytes (never when
    None) or when its transport's ``cut_streams()`` is called."""

    def __init__(
        self,
        owner: FaultyTransport,
        request: httpx.Request,
        inner: httpx.AsyncByteStream,
        limit: int | None,
    ) -> None:
        self._owner = owner
        self._request = request
        self._inner = inner
        self._limit = limit

    def _cut(self) -> httpx.ReadError:
        return httpx.ReadError("response body cut by FaultyTransport", request=self._request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        state = _Open(self._request)
        self._owner._open.add(state)
        chunks = self._inner.__aiter__()
        sent = 0
        try:
            while True:
                if self._limit is not None and sent >= self._limit:
                    raise self._cut()
                chunk = await self._next(chunks, state)
                if chunk is None:
                    return
                if self._limit is not None and sent + len(chunk) > self._limit:
                    chunk = chunk[: self._limit - sent]
                sent += len(chunk)
                if chunk:
                    yield chunk
        finally:
            self._owner._open.discard(state)

    async def _next(self, chunks: AsyncIterator[bytes], state: _Open) -> bytes | None:
        """The next chunk, None at the end; ``ReadError`` if ``cut_streams()`` comes first."""
        if state.cut.is_set():
            raise self._cut()
        reading = asyncio.ensure_future(anext(chunks, None))
        cutting = asyncio.ensure_future(state.cut.wait())
        try:
            await asyncio.wait({reading, cutting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cutting.cancel()
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reading
            raise self._cut()
        return reading.result()

    async def aclose(self) -> None:
        await self._inner.aclose()
