"""The inspector's tests: stores seeded with sessions (one carrying hostile content), the
``sandbox-agent inspect`` process, Debian's Chromium for Playwright, screenshots."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, open_store
from sandbox_agent.testing.ci import in_ci
from sandbox_agent.testing.databases import (
    drop_schema,
    new_schema_name,
    pg_url,
    require_postgres,
    sqlite_url,
)
from sandbox_agent.testing.server import free_port
from sandbox_agent.testing.streams import Stream, canonical_session

T = TypeVar("T")

#: Debian's chromium package: Playwright drives it, no browser is downloaded.
CHROMIUM = os.environ.get("SANDBOX_AGENT_CHROMIUM", "/usr/bin/chromium")
#: Screenshots of each page the browser tests visit (gitignored).
ARTIFACTS = (
    Path(
        os.environ.get(
            "SANDBOX_AGENT_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
        )
    )
    / "inspector"
)

#: Content that would run script if the page ever let markup through: each sets the flag
#: ``window.__xss`` or opens a dialog.
XSS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "[click me](javascript:window.__xss=1)",
    '<a href="javascript:window.__xss=1">link</a>',
    '<svg onload="alert(1)">',
    '"><script>alert(1)</script>',
]


def need_chromium() -> None:
    """Skip (under CI: fail) without Playwright or the chromium package."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install 'sandbox-agent[dev]')"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if problem is not None:
        if in_ci():
            pytest.fail(problem)
        pytest.skip(problem)


def in_thread(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion in a thread of its own (Playwright's sync API holds an
    event loop in the test's thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]


@contextlib.contextmanager
def store_url(driver: str, tmp: Path) -> Iterator[str]:
    """A fresh SQLite file or Postgres schema (dropped afterwards, from a thread of its own)."""
    if driver == "sqlite":
        yield sqlite_url(tmp / "store.db")
        return
    require_postgres()
    schema = new_schema_name()
    try:
        yield pg_url(schema)
    finally:
        in_thread(lambda: drop_schema(schema))


def xss_session(session_id: str = "xss") -> Stream:
    """A session whose agent output, tool output, file names, permission, question and error
    all carry ``XSS``."""
    payload = " ".join(XSS)
    s = Stream(session_id).started("mock", title=payload)
    s.turn("t1").user("u1", payload)
    s.assistant("a1", payload + "\n\n" + "\n".join(f"- {p}" for p in XSS))
    s.tool_call("c1", XSS[1], {"path": XSS[0]}, "call_1")
    s.tool_result(
        "c1r",
        "call_1",
        payload,
        {"type": "file_ref", "path": XSS[1] + ".py", "action": "patch", "diff": "+" + XSS[0]},
    )
    s.item_start("r1")
    s.item_done("r1", [{"type": "reasoning", "text": payload, "visibility": "public"}])
    s.permission("p1", XSS[4], "accept")
    s.question_ask("q1", XSS[0], [XSS[1], XSS[2]])
    s.question_answer("q1", XSS[0], XSS[1], [XSS[1], XSS[2]])
    s.error(XSS[5], "x<b>")
    s.turn_end("t1")
    return s


def broken_session(session_id: str = "broken") -> Stream:
    """A session with anomalies: a delta for an item that never started, a turn ended twice."""
    s = Stream(session_id).started("mock", title="A broken stream")
    s.turn("t1").user("u1", "hello")
    s.delta("ghost", "boo")
    s.assistant("a1", "hi")
    s.turn_end("t1")
    s.turn_end("t1")
    return s


def seed(url: str, extra_sessions: int = 0) -> None:
    """Write ``alpha`` (every kind of content), ``xss``, ``broken`` and ``extra_sessions``
    small ones into the store at ``url``."""

    async def go() -> None:
        async with await open_store(url) as store:
            for stream, title in (
                (canonical_session("alpha"), "Fix the greeting"),
                (xss_session(), " ".join(XSS)),
                (broken_session(), "A broken stream"),
            ):
                await store.create_session(
                    SessionRecord(id=stream.session_id, agent="mock", title=title)
                )
                drafts = [EventDraft.from_event(e) for e in stream.events]
                await store.append(stream.session_id, drafts)
            for n in range(extra_sessions):
                sid = f"extra-{n:05d}"
                await store.create_session(SessionRecord(id=sid, agent="other", title=f"n{n}"))

    in_thread(go)


class Inspect:
    """A ``sandbox-agent inspect`` process over ``store_url``."""

    def __init__(self, store_url: str, log_path: Path, *, writable: bool = False) -> None:
        self.store_url, self.log_path, self.writable = store_url, log_path, writable
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Inspect:
        command = [
            sys.executable, "-m", "sandbox_agent", "inspect",
            "--store", self.store_url, "-p", str(self.port),
            *(["--writable"] if self.writable else []),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"inspect exited: {self.log_path.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"inspect did not answer: {self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def inspecting(store_url: str, log_path: Path, **kwargs: Any) -> Iterator[Inspect]:
    inspect = Inspect(store_url, log_path, **kwargs).start()
    try:
        yield inspect
    finally:
        inspect.stop()


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot of what ``page`` shows as ``ARTIFACTS/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
