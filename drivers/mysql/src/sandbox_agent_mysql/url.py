"""``mysql://user:password@host:port/database?option=value``: the URL and its options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy.engine import URL, make_url

from sandbox_agent.store.errors import StoreConfigError

#: The URL schemes of this driver (each is an entry point of ``sandbox_agent.store_drivers``).
SCHEMES = ("mysql", "mysql+asyncmy", "mariadb", "mariadb+asyncmy")


@dataclass(frozen=True)
class MysqlOptions:
    """What a store URL and the keyword options of ``open_store`` say, checked."""

    url: URL  # for SQLAlchemy: mysql+asyncmy://..., without our options
    pool_size: int = 10
    poll_interval: float = 0.2
    connect_timeout: float = 10.0

    @property
    def where(self) -> str:
        """``host:port/database``, for messages (never the password)."""
        return f"{self.url.host or 'localhost'}:{self.url.port or 3306}/{self.url.database}"


def parse(url: str, options: dict[str, Any]) -> MysqlOptions:
    """Check ``url`` and its options (keyword options win over the query string's).
    ``StoreConfigError`` for a bad URL, an unknown option or a bad value."""
    if not isinstance(url, str) or "://" not in url:
        raise StoreConfigError(f"invalid MySQL store URL {url!r}: expected mysql://user@host/db")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise StoreConfigError(
            f"{url!r} is not a MySQL store URL: its scheme must be one of {', '.join(SCHEMES)}"
        )
    merged: dict[str, Any] = {**dict(parse_qsl(parts.query, keep_blank_values=True)), **options}
    pool_size = _number(merged, "pool_size", 10, int)
    poll_interval = _number(merged, "poll_interval", 0.2, float)
    connect_timeout = _number(merged, "connect_timeout", 10.0, float)
    if merged:
        raise StoreConfigError(
            f"unknown store option(s) {sorted(merged)} for {_hide_password(url)!r}: the MySQL "
            "driver takes pool_size, poll_interval and connect_timeout"
        )
    try:
        sa_url = make_url(url.partition("?")[0]).set(drivername="mysql+asyncmy")
        sa_url = sa_url.update_query_dict({"charset": "utf8mb4"})
        port = sa_url.port  # parsing a bad port raises only here
    except Exception as exc:
        raise StoreConfigError(f"invalid MySQL store URL {_hide_password(url)!r}: {exc}") from exc
    if not sa_url.database:
        raise StoreConfigError(
            f"MySQL store URL {_hide_password(url)!r} names no database: mysql://user@host/db"
        )
    del port
    return MysqlOptions(sa_url, pool_size, poll_interval, connect_timeout)


def _number(options: dict[str, Any], name: str, default: Any, kind: type[Any]) -> Any:
    value = options.pop(name, None)
    if value is None:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError) as exc:
        raise StoreConfigError(
            f"MySQL store option {name} must be a number, got {value!r}"
        ) from exc
    if not number > 0:
        raise StoreConfigError(f"MySQL store option {name} must be above 0, got {value!r}")
    return number


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
