"""The frame of ``StoreContract``: its hooks, fixtures, groups and named promises."""

from __future__ import annotations

import functools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import pytest_asyncio

from sandbox_agent.store import EventStore, open_store

#: The groups of the contract and what each covers; ``skip_groups`` names them.
GROUPS: dict[str, str] = {
    "sessions": "create, get, list (order, pages, filters, cursors), update, delete; odd ids, "
    "overlong text, NUL refused in text fields, extreme times",
    "append": "gapless sequences, expected_sequence conflicts, idempotent retries, whole batches",
    "projection": "the session row follows its events: counts, status, ended_at, native id",
    "reading": "read and read_all: ranges, paging, positions in commit order",
    "round_trip": "what goes in comes out: payloads, raw values, strings, times",
    "snapshots": "save, load (newest at or before, by version), JSON text, prune_snapshots",
    "fork": "fork_session copies a stream (or its first k events) with new ids",
    "prune": "prune by status, age and keep_latest",
    "subscribe": "subscribe: stored then live events, paging, wake-ups, close, deletes, load",
    "opening": "open_store of the driver's URL: unknown options, the async context manager "
    "(needs a store URL)",
    "concurrency": "concurrent appenders (tasks, and stores on one database), a read_all "
    "follower, deletes during appends",
    "processes": "subscribers and appenders in other processes (needs a URL a fresh Python "
    "process can open: a built-in scheme or an entry point)",
    "crash": "writers killed with SIGKILL mid-append leave whole batches and lose no "
    "acknowledged one (``crash_trials`` trials; needs a URL as for 'processes')",
}

# Schemes a fresh Python process can open without this process's ``register_driver`` calls.
_BUILT_IN_SCHEMES = {"sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg"}

_Test = TypeVar("_Test", bound=Callable[..., Awaitable[None]])
_Class = TypeVar("_Class", bound=type)


def keeps(name: str) -> Callable[[_Test], _Test]:
    """Name the promise a contract test checks (otherwise its name, in words, is used)."""

    def mark(test: _Test) -> _Test:
        test._store_promise = name  # type: ignore[attr-defined]
        return test

    return mark


def _promised(test: Callable[..., Awaitable[None]], name: str) -> Callable[..., Awaitable[None]]:
    """The test, with any failure re-raised as an ``AssertionError`` that names the promise."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        try:
            await test(*args, **kwargs)
        except (Exception, pytest.fail.Exception) as exc:
            detail = str(exc) or repr(exc)
            raise AssertionError(
                f"promise {name!r} broken: {type(exc).__name__}: {detail}"
            ) from exc

    return run


def group(name: str) -> Callable[[_Class], _Class]:
    """Put every test of a contract class in the group ``name`` (see ``GROUPS``)."""
    if name not in GROUPS:
        raise ValueError(f"unknown contract group {name!r}")

    def mark(cls: _Class) -> _Class:
        for attr, test in list(vars(cls).items()):
            if attr.startswith("test_") and callable(test):
                words = attr.removeprefix("test_").replace("_", " ")
                wrapped = _promised(test, getattr(test, "_store_promise", words))
                wrapped._store_group = name  # type: ignore[attr-defined]
                setattr(cls, attr, wrapped)
        return cls

    return mark


class ContractFrame:
    """Hooks and fixtures shared by every group of ``StoreContract``."""

    pytestmark = [pytest.mark.asyncio]

    #: The URL of the driver under test. SQLite URLs get a fresh file per store (in
    #: ``tmp_path``, the query string kept); other URLs are used as given, so override
    #: ``fresh_store_url`` when a store URL is not empty when opened (a Postgres database).
    store_url: ClassVar[str | None] = None
    #: Groups this driver opts out of, each with the reason shown in the skip.
    skip_groups: ClassVar[Mapping[str, str]] = {}
    #: SIGKILL trials of the ``crash`` group (each forks a writer and kills it mid-append).
    crash_trials: ClassVar[int] = 15
    #: Whether two stores opened on one URL see the same data (None: all but ``memory://``).
    shared_database: ClassVar[bool | None] = None

    tmp_path: Path
    _urls: list[str]

    # -- hooks a driver's test class overrides --------------------------------------------
    async def fresh_store_url(self) -> str | None:
        """A URL of a new, empty store (None: this driver has no URL; ``make_store`` must be
        overridden, and the groups that need a URL are skipped). ``self.tmp_path`` is the
        test's temporary directory."""
        url = self.store_url
        if url is None:
            return None
        scheme, _, rest = url.partition("://")
        if scheme.lower().startswith("sqlite"):
            query = rest.partition("?")[2]
            path = self.tmp_path / f"store-{secrets.token_hex(4)}.db"
            return f"{scheme}:///{path}" + (f"?{query}" if query else "")
        return url

    async def discard_store_url(self, url: str) -> None:
        """Remove what ``fresh_store_url`` made (a schema, a database), after the test."""

    async def make_store(self) -> EventStore:
        """A new, empty, open store (the test closes it). By default ``open_store`` of a
        ``fresh_store_url``."""
        return await open_store(await self.new_store_url())

    def subscriber_url(self, url: str) -> str:
        """The URL a caught-up subscriber opens to follow another store's appends on the same
        database (add a polling option here if the driver needs one)."""
        return url

    # -- for the tests ----------------------------------------------------------------------
    async def new_store_url(self) -> str:
        """A fresh URL, discarded after the test; skips the test when the driver has none."""
        url = await self.fresh_store_url()
        if url is None:
            pytest.skip("needs a store URL: set store_url or override fresh_store_url")
        self._urls.append(url)
        return url

    async def process_store_url(self) -> str:
        """A fresh URL that a new Python process can open; skips the test otherwise."""
        url = await self.new_store_url()
        scheme = url.partition("://")[0].lower()
        if scheme == "memory":
            pytest.skip("memory:// lives in one process: nothing to share with another")
        schemes = _BUILT_IN_SCHEMES | {
            e.name.lower() for e in entry_points(group="sandbox_agent.store_drivers")
        }
        if scheme not in schemes:
            pytest.skip(
                f"scheme {scheme!r} is neither built in nor a 'sandbox_agent.store_drivers' "
                "entry point, so a fresh Python process cannot open it"
            )
        return url

    def shares_data(self, url: str) -> bool:
        """Whether stores opened on ``url`` share their data (see ``shared_database``)."""
        if self.shared_database is not None:
            return self.shared_database
        return not url.lower().startswith("memory:")

    # -- fixtures ---------------------------------------------------------------------------
    @pytest_asyncio.fixture(autouse=True, loop_scope="function")
    async def _store_contract_frame(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[None]:
        self.tmp_path = tmp_path
        self._urls = []
        unknown = sorted(set(self.skip_groups) - set(GROUPS))
        if unknown:
            pytest.fail(
                f"skip_groups of {type(self).__name__} names unknown groups {unknown}; the groups "
                f"are {sorted(GROUPS)}",
                pytrace=False,
            )
        name = getattr(request.function, "_store_group", None)
        if name is not None and name in self.skip_groups:
            pytest.skip(f"group {name!r} opted out: {self.skip_groups[name]}")
        try:
            yield
        finally:
            for url in reversed(self._urls):
                await self.discard_store_url(url)

    @pytest_asyncio.fixture(loop_scope="function")
    async def store(self, _store_contract_frame: None) -> AsyncIterator[EventStore]:
        """A new, empty store from ``make_store``, closed after the test."""
        opened = await self.make_store()
        try:
            yield opened
        finally:
            await opened.close()

    @pytest_asyncio.fixture(loop_scope="function")
    async def contract_url(self, _store_contract_frame: None) -> str:
        """A fresh store URL (the test opens and closes its stores)."""
        return await self.new_store_url()
