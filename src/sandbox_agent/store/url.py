"""``open_store(url)``: pick the driver from the URL and open it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox_agent.store.base import EventStore
from sandbox_agent.store.errors import StoreConfigError

SCHEMES = {
    "memory": "memory",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "postgresql+asyncpg": "postgres",
}


def split_options(url: str) -> tuple[str, str, dict[str, str]]:
    """(driver, url without the query, query options). Raises ``StoreConfigError``."""
    if not isinstance(url, str) or "://" not in url:
        raise StoreConfigError(
            f"invalid store URL {url!r}: expected memory://, sqlite:///path.db or "
            "postgresql://user@host:port/db"
        )
    parts = urlsplit(url)
    driver = SCHEMES.get(parts.scheme.lower())
    if driver is None:
        raise StoreConfigError(
            f"unknown store driver {parts.scheme!r} in {url!r}: use one of "
            "memory://, sqlite:///..., postgresql://..."
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    base = url.partition("?")[0]  # not geturl(): it would fold sqlite://// into sqlite://
    return driver, base, options


async def open_store(url: str, *, migrate: bool = True, **options: Any) -> EventStore:
    """Open the store at ``url`` (running pending migrations unless ``migrate=False``).

    Options come from the URL's query string and from keyword arguments (which win):
    ``memory://?max_sessions=100&max_events_per_session=10000``,
    ``sqlite:///path.db?synchronous=full&busy_timeout=5000``,
    ``postgresql://user@host/db?schema=name&pool_size=10``.
    The store is an async context manager that closes it.
    """
    driver, base, query = split_options(url)
    merged: dict[str, Any] = {**query, **options}
    if driver == "memory":
        from sandbox_agent.store.memory import MemoryEventStore

        return MemoryEventStore(
            max_sessions=int_option(merged, "max_sessions"),
            max_events_per_session=int_option(merged, "max_events_per_session"),
            **no_more_options(merged, url),
        )
    if driver == "sqlite":
        from sandbox_agent.store.sqlite import SqliteEventStore

        return await SqliteEventStore.open(base, migrate=migrate, **merged)
    from sandbox_agent.store.postgres import PostgresEventStore

    return await PostgresEventStore.open(base, migrate=migrate, **merged)


def int_option(options: dict[str, Any], name: str) -> int | None:
    value = options.pop(name, None)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise StoreConfigError(f"store option {name} must be an integer, got {value!r}") from exc


def float_option(options: dict[str, Any], name: str, default: float) -> float:
    value = options.pop(name, None)
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise StoreConfigError(f"store option {name} must be a number, got {value!r}") from exc


def no_more_options(options: dict[str, Any], url: str) -> dict[str, Any]:
    if options:
        raise StoreConfigError(f"unknown store option(s) {sorted(options)} for {url!r}")
    return {}
