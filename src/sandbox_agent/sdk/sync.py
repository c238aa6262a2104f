"""``SandboxAgentSync``: the async SDK run on a private event loop thread, for scripts.

Every method hands its coroutine to that loop and waits for the result; the logic stays in
the async classes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from sandbox_agent.api import (
    FsEntry,
    FsMoveResponse,
    FsPathResponse,
    FsStat,
    FsUploadResponse,
    FsWriteResponse,
)
from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import SessionState
from sandbox_agent.sdk.client import SandboxAgent
from sandbox_agent.sdk.fs import Content, FsApi
from sandbox_agent.sdk.session import PermissionReply, Session, TurnResult
from sandbox_agent.store import Page, SessionRecord

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="sandbox-agent-sdk", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SessionSync:
    """The blocking twin of ``Session``."""

    def __init__(self, session: Session, loop: _LoopThread) -> None:
        self.session = session
        self.id = session.id
        self._loop = loop

    def send(
        self,
        text: str,
        attachments: Sequence[dict[str, Any]] | None = None,
        *,
        if_idle: bool = False,
    ) -> int:
        return self._loop.run(self.session.send(text, attachments, if_idle=if_idle))

    def prompt(
        self,
        text: str,
        attachments: Sequence[dict[str, Any]] | None = None,
        *,
        if_idle: bool = False,
    ) -> TurnResult:
        return self._loop.run(self.session.prompt(text, attachments, if_idle=if_idle))

    @property
    def queue_id(self) -> str | None:
        return self.session.queue_id

    def queued(self) -> list[dict[str, Any]]:
        return self._loop.run(self.session.queued())

    def cancel_queued(self, queue_id: str | None = None) -> None:
        self._loop.run(self.session.cancel_queued(queue_id))

    @property
    def turn_running(self) -> bool:
        return self.session.turn_running

    def wait(self, timeout: float | None = None) -> TurnResult:
        return self._loop.run(self.session.wait(timeout))

    def reply_permission(self, permission_id: str, reply: PermissionReply) -> None:
        self._loop.run(self.session.reply_permission(permission_id, reply))

    def reply_question(self, question_id: str, answers: list[list[str]]) -> None:
        self._loop.run(self.session.reply_question(question_id, answers))

    def reject_question(self, question_id: str) -> None:
        self._loop.run(self.session.reject_question(question_id))

    def cancel(self) -> None:
        self._loop.run(self.session.cancel())

    def terminate(self) -> None:
        self._loop.run(self.session.terminate())

    def state(self, at: int | None = None) -> SessionState:
        return self._loop.run(self.session.state(at))

    def fork(self, new_id: str | None = None, at: int | None = None) -> SessionSync:
        return SessionSync(self._loop.run(self.session.fork(new_id, at)), self._loop)

    def events(self, after: int | None = None) -> list[UniversalEvent]:
        """The stored events after ``after`` (no following: use the async SDK for that)."""

        async def collect() -> list[UniversalEvent]:
            return [e async for e in self.session.events(after, follow=False)]

        return self._loop.run(collect())

    def iter_events(self, after: int | None = None) -> Iterator[UniversalEvent]:
        """Follow the events: yields each one as it is stored, until the caller stops."""
        stream = self.session.events(after, follow=True).__aiter__()
        try:
            while True:
                try:
                    yield self._loop.run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run(stream.aclose())  # type: ignore[attr-defined]


class FsSync:
    """The blocking twin of ``FsApi`` (``sdk.fs``): the same methods and arguments."""

    def __init__(self, fs: FsApi, loop: _LoopThread) -> None:
        self._fs = fs
        self._loop = loop

    def entries(self, path: str = ".", session_id: str | None = None) -> list[FsEntry]:
        return self._loop.run(self._fs.entries(path, session_id))

    def stat(self, path: str, session_id: str | None = None) -> FsStat:
        return self._loop.run(self._fs.stat(path, session_id))

    def read(self, path: str, session_id: str | None = None) -> bytes:
        return self._loop.run(self._fs.read(path, session_id))

    def read_to(self, path: str, destination: Path, session_id: str | None = None) -> int:
        return self._loop.run(self._fs.read_to(path, destination, session_id))

    def write(self, path: str, content: Content, session_id: str | None = None) -> FsWriteResponse:
        return self._loop.run(self._fs.write(path, content, session_id))

    def mkdir(self, path: str, session_id: str | None = None) -> FsPathResponse:
        return self._loop.run(self._fs.mkdir(path, session_id))

    def move(
        self, source: str, destination: str, overwrite: bool = False, session_id: str | None = None
    ) -> FsMoveResponse:
        return self._loop.run(self._fs.move(source, destination, overwrite, session_id))

    def delete(
        self, path: str, recursive: bool = False, session_id: str | None = None
    ) -> FsPathResponse:
        return self._loop.run(self._fs.delete(path, recursive, session_id))

    def upload(
        self, archive: Content, path: str = ".", session_id: str | None = None
    ) -> FsUploadResponse:
        return self._loop.run(self._fs.upload(archive, path, session_id))


async def _next(stream: Any) -> UniversalEvent:
    event: UniversalEvent = await anext(stream)
    return event


class SandboxAgentSync:
    """The blocking twin of ``SandboxAgent``: ``SandboxAgentSync.connect(...)`` or
    ``.start(...)`` take the same arguments; use it as a context manager or call ``close()``."""

    def __init__(self, sdk: SandboxAgent, loop: _LoopThread) -> None:
        self.sdk = sdk
        self._loop = loop
        #: The server's filesystem API, blocking.
        self.fs = FsSync(sdk.fs, loop)

    @classmethod
    def connect(cls, base_url: str, *args: Any, **kwargs: Any) -> SandboxAgentSync:
        return cls._open(lambda: SandboxAgent.connect(base_url, *args, **kwargs))

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> SandboxAgentSync:
        return cls._open(lambda: SandboxAgent.start(*args, **kwargs))

    @classmethod
    def _open(cls, opener: Any) -> SandboxAgentSync:
        loop = _LoopThread()
        try:
            sdk: SandboxAgent = loop.run(opener())
        except BaseException:
            loop.stop()
            raise
        return cls(sdk, loop)

    def close(self) -> None:
        try:
            self._loop.run(self.sdk.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def list_agents(self) -> list[dict[str, Any]]:
        return self._loop.run(self.sdk.list_agents())

    def create_session(self, id: str | None = None, **params: Any) -> SessionSync:
        return SessionSync(self._loop.run(self.sdk.create_session(id, **params)), self._loop)

    def get_session(self, id: str) -> SessionSync:
        return SessionSync(self._loop.run(self.sdk.get_session(id)), self._loop)

    def fork(
        self, session_id: str, new_id: str | None = None, at: int | None = None
    ) -> SessionSync:
        return SessionSync(self._loop.run(self.sdk.fork(session_id, new_id, at)), self._loop)

    def resume_session(self, id: str) -> SessionSync:
        return SessionSync(self._loop.run(self.sdk.resume_session(id)), self._loop)

    def resume_or_create_session(self, id: str, **params: Any) -> SessionSync:
        return SessionSync(
            self._loop.run(self.sdk.resume_or_create_session(id, **params)), self._loop
        )

    def list_sessions(self, **params: Any) -> Page[SessionRecord]:
        return self._loop.run(self.sdk.list_sessions(**params))

    def delete_session(self, id: str) -> None:
        self._loop.run(self.sdk.delete_session(id))
