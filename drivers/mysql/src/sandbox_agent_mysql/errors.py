"""asyncmy and SQLAlchemy errors as ``StoreError``s: the driver never lets its own escape."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc
from asyncmy import errors as my

from sandbox_agent.store.errors import StoreError, StoreUnavailable

#: MySQL/MariaDB error codes that mean the server cannot be reached, or the connection is gone:
#: can't connect (2002, 2003), unknown host (2005), server gone away or lost (2006, 2013, 2055),
#: too many connections (1040), server shutting down (1053), connection killed (1927 MariaDB,
#: 4031 MySQL idle timeout).
DISCONNECTED = frozenset({1040, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2055, 4031})
#: Cannot be opened: access denied (1044, 1045, 1698), unknown database (1049).
UNOPENABLE = frozenset({1044, 1045, 1049, 1698})
#: The server answers these and then closes the connection: packet too large (1153).
CLOSES_CONNECTION = frozenset({1153})
DUPLICATE_KEY = 1062
NO_SUCH_TABLE = 1146
DEADLOCK = 1213

NOT_MIGRATED_HINT = " (is the database migrated? run `sandbox-agent db upgrade URL`)"


def error_code(exc: BaseException) -> int | None:
    """The server's error number of an asyncmy error (wrapped by SQLAlchemy or not)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, my.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is unusable (so the caller drops it)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    return (
        error_code(exc) in DISCONNECTED
        or isinstance(cause, OSError | my.InterfaceError)
        or isinstance(exc, sqlalchemy.exc.TimeoutError)  # no pooled connection in time
    )


def store_error(exc: BaseException, where: str) -> StoreError:
    """The ``StoreError`` that says what went wrong with the database at ``where``."""
    if isinstance(exc, StoreError):
        return exc
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig else exc
    if is_disconnect(exc):
        return StoreUnavailable(f"MySQL at {where} is unavailable: {cause}")
    hint = NOT_MIGRATED_HINT if error_code(exc) == NO_SUCH_TABLE else ""
    if isinstance(cause, UnicodeError):
        return StoreError(f"MySQL at {where}: text that is not valid Unicode: {cause}")
    return StoreError(f"MySQL at {where}: {cause}{hint}")


@contextmanager
def mapped(where: str) -> Iterator[None]:
    """Raise every database, network or encoding error inside as a ``StoreError``."""
    try:
        yield
    except StoreError:
        raise
    except (sqlalchemy.exc.SQLAlchemyError, my.MySQLError, OSError, UnicodeError) as exc:
        raise store_error(exc, where) from exc  # OSError includes TimeoutError
