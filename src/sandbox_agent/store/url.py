"""``open_store(url)``: find the URL scheme's driver (``store/registry.py``) and open it; the
option parsing the openers share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sandbox_agent.store.errors import StoreConfigError, StoreError, StoreNotFound
from sandbox_agent.store.paths import database_path

if TYPE_CHECKING:
    from sandbox_agent.store.event_store import EventStore


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """(the URL without its query, the query's options)."""
    options = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    base = url.partition("?")[0]  # not geturl(): it would fold sqlite://// into sqlite://
    return base, options


#: The options ``open_store`` takes for itself, for every driver: ``store/seal.py``.
SEAL_OPTIONS = ("compress", "keys", "active_key")


def take_seal_options(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(``url`` without the seal options in its query, the seal options), the keyword
    ``options`` winning over the query's and taken out of ``options``."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    seal = {name: value for name, value in pairs if name in SEAL_OPTIONS}
    for name in SEAL_OPTIONS:
        if name in options:
            seal[name] = options.pop(name)
    if not any(name in SEAL_OPTIONS for name, _ in pairs):
        return url, seal
    rest = [(name, value) for name, value in pairs if name not in SEAL_OPTIONS]
    return (f"{base}?{urlencode(rest)}" if rest else base), seal


async def open_store(
    url: str,
    *,
    migrate: bool | None = None,
    create: bool = True,
    **options: Any,
) -> EventStore:
    """Open the store at ``url`` (running pending migrations unless ``migrate=False``).
    ``create=False`` opens only a store that exists: a SQLite file that does not is
    ``StoreNotFound`` (a read-only command must not leave an empty database behind a typo).

    The URL's scheme picks the driver: ``memory://``, ``sqlite:///path.db``,
    ``postgresql://user@host/db``, or any scheme registered with ``register_driver`` or the
    ``sandbox_agent.store_drivers`` entry point. Options come from the URL's query string and
    from keyword arguments (which win):
    ``memory://?max_sessions=100&max_events_per_session=10000``,
    ``sqlite:///path.db?synchronous=full&busy_timeout=5000``,
    ``postgresql://user@host/db?schema=name&pool_size=10``.
    The store is an async context manager that closes it.

    Every driver also takes, read here and never passed on to it, ``compress`` (``zstd``,
    ``zlib`` or ``none``) and ``keys`` (``env:NAME`` or ``file:PATH``, naming where a keyring
    is, never a key; or a ``Keyring``) with ``active_key``: payloads and snapshot states are
    then sealed at rest (``store/seal.py``, docs/persistence.md).
    """
    from sandbox_agent.store.event_store import EventStore
    from sandbox_agent.store.registry import opener_for, registered_schemes

    if not isinstance(url, str) or "://" not in url:
        raise StoreConfigError(
            f"invalid store URL {url!r}: expected scheme://..., with a scheme of "
            f"{', '.join(registered_schemes())}"
        )
    from sandbox_agent.store.seal import build

    url, seal_options = take_seal_options(url, options)
    sealer = build(**seal_options)
    scheme = urlsplit(url).scheme
    opener = opener_for(scheme, url)
    if not create and scheme.lower() in ("sqlite", "sqlite+aiosqlite"):
        path = database_path(split_url(url)[0])
        if not path.exists():
            raise StoreNotFound(f"no store at {path}: the SQLite file does not exist")
    if migrate is not None:
        options["migrate"] = migrate
    try:
        store = await (opener(url, **options) if options else opener(url))
    except StoreError:
        raise
    except Exception as exc:
        # A driver of another package that rejects the URL: its message, not a traceback.
        raise StoreConfigError(f"cannot open {scheme} store {url!r}: {exc}") from exc
    if not isinstance(store, EventStore):
        raise StoreConfigError(
            f"the {scheme!r} store driver returned {type(store).__name__}, not an EventStore"
        )
    if sealer is not None:
        store.sealer = sealer
    return store


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


async def database_status(url: str, *, upgrade: bool) -> tuple[str | None, str]:
    """(the database's revision, the head revision) of the store at ``url``; with
    ``upgrade`` the pending migrations run first. Raises ``StoreConfigError`` for memory://,
    which has no schema."""
    async with await open_store(url, migrate=upgrade, create=upgrade) as store:
        status = await store.driver.schema_status()
        if status is None:
            raise StoreConfigError(f"{url!r} has no database schema: migrations are for SQL stores")
        return status
