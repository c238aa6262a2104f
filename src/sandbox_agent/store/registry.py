"""Store drivers by URL scheme: ``register_driver`` and the ``sandbox_agent.store_drivers``
entry-point group, which ``open_store`` consults for every URL.

An opener is an async callable that takes the store URL (query string included) and returns an
open ``EventStore``. ``open_store``'s keyword options (``migrate=False`` among them) are passed
on as keyword arguments only when the caller gives some, so a plain ``async def open(url)``
is a complete opener. A distribution adds a scheme with an entry point (name = scheme, object =
the opener)::

    [project.entry-points."sandbox_agent.store_drivers"]
    mysql = "sandbox_agent_mysql:open_mysql_store"
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from sandbox_agent.store.errors import StoreConfigError

if TYPE_CHECKING:
    from sandbox_agent.store.event_store import EventStore

#: ``opener(url, **options) -> EventStore``.
Opener = Callable[..., Awaitable["EventStore"]]

ENTRY_POINT_GROUP = "sandbox_agent.store_drivers"


class _Registration:
    __slots__ = ("load", "origin")

    def __init__(self, load: Callable[[], Opener], origin: str) -> None:
        self.load = load
        self.origin = origin


_lock = threading.Lock()
_registered: dict[str, _Registration] = {}
_entry_points_loaded = False


def _builtin(module: str, name: str) -> Callable[[], Opener]:
    def load() -> Opener:
        import importlib

        opener: Opener = getattr(importlib.import_module(module), name)
        return opener

    return load


# Built in, imported only when used: each driver pulls in its database library.
_BUILTINS: dict[str, tuple[str, str]] = {
    "memory": ("sandbox_agent.store.memory", "open_memory_store"),
    "sqlite": ("sandbox_agent.store.sqlite", "open_sqlite_store"),
    "sqlite+aiosqlite": ("sandbox_agent.store.sqlite", "open_sqlite_store"),
    "postgresql": ("sandbox_agent.store.postgres", "open_postgres_store"),
    "postgres": ("sandbox_agent.store.postgres", "open_postgres_store"),
    "postgresql+asyncpg": ("sandbox_agent.store.postgres", "open_postgres_store"),
}
for _scheme, (_module, _name) in _BUILTINS.items():
    _registered[_scheme] = _Registration(_builtin(_module, _name), f"built in ({_module})")


def register_driver(scheme: str, opener: Opener, *, replace: bool = False) -> None:
    """Make ``open_store`` (and so the server, the CLI, the SDK and ``SANDBOX_AGENT_STORE``)
    open ``scheme://...`` URLs with ``opener``. Registering a scheme that is taken raises
    ``StoreConfigError`` naming both registrations, unless ``replace=True``."""
    key = _normal(scheme)
    origin = f"register_driver({_describe(opener)})"
    with _lock:
        _load_entry_points()
        taken = _registered.get(key)
        if taken is not None and not replace:
            raise StoreConfigError(
                f"store driver scheme {key!r} is registered twice: by {taken.origin} and by "
                f"{origin}"
            )
        _registered[key] = _Registration(lambda: opener, origin)


def registered_schemes() -> list[str]:
    """Every scheme ``open_store`` knows, sorted."""
    with _lock:
        _load_entry_points()
        return sorted(_registered)


def opener_for(scheme: str, url: str) -> Opener:
    """The opener of ``scheme``; ``StoreConfigError`` listing the known schemes otherwise."""
    key = _normal(scheme)
    with _lock:
        _load_entry_points()
        registration = _registered.get(key)
        known = sorted(_registered)
    if registration is None:
        raise StoreConfigError(
            f"unknown store driver {scheme!r} in {url!r}: registered schemes are "
            f"{', '.join(known)} (a driver package adds its scheme with the "
            f"{ENTRY_POINT_GROUP!r} entry point, or call register_driver)"
        )
    try:
        return registration.load()
    except StoreConfigError:
        raise
    except Exception as exc:
        raise StoreConfigError(
            f"store driver {key!r} ({registration.origin}) cannot be loaded: {exc}"
        ) from exc


def _load_entry_points() -> None:
    """Read the entry points once (under ``_lock``); a scheme two distributions claim, or one
    that is built in, is an error naming both."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        key = _normal(entry.name)
        origin = _entry_origin(entry)
        taken = _registered.get(key)
        if taken is not None:
            message = (
                f"store driver scheme {key!r} is registered twice: by {taken.origin} and by "
                f"{origin}"
            )
            _registered[key] = _Registration(_refuse(message), f"{taken.origin} and {origin}")
            continue
        _registered[key] = _Registration(_entry_loader(entry), origin)


def _entry_loader(entry: EntryPoint) -> Callable[[], Opener]:
    def load() -> Opener:
        opener: Opener = entry.load()
        return opener

    return load


def _refuse(message: str) -> Callable[[], Opener]:
    def load() -> Opener:
        raise StoreConfigError(message)

    return load


def _entry_origin(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    name = getattr(dist, "name", None) or "an unknown distribution"
    return f"entry point {entry.name} = {entry.value} of {name}"


def _describe(opener: Any) -> str:
    module = getattr(opener, "__module__", None) or "?"
    name = getattr(opener, "__qualname__", None) or repr(opener)
    return f"{module}.{name}"


def _normal(scheme: str) -> str:
    key = scheme.strip().lower()
    if not key or "://" in key or ":" in key:
        raise StoreConfigError(f"a store driver scheme is a bare name like 'mysql', got {scheme!r}")
    return key
