"""Schema versions of event payloads, and the upcasters that read old shapes as current.

Every stored event carries the version of its ``data`` shape (``schema_version``; 1 unless a
type's shape has changed since). When a type's shape changes, its version goes up by one and an
upcaster from the old version is registered: a function from the old ``data`` (a dict) to the
next version's. Readers (the store's reads, ``import``) run the chain ``v -> v+1 -> ... ->
current`` on each event stored at an older version, so every reader sees current shapes while
the stored rows stay as written (``sandbox-agent db upcast`` rewrites them, only when asked).

Event types of the user's own (any ``type`` string) evolve the same way::

    from sandbox_agent.events.versions import register_upcaster

    @register_upcaster("app.note", 1)
    def note_v1_to_v2(data):
        return {"body": data["text"], "format": "plain"}

A type's current version is the highest version its upcasters reach (1 for a type with none).
An event stored at a version above the current one (written by a newer release) is served as
stored, never guessed at; a chain with a missing step is an ``UpcastError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

#: The version of a shape that no upcaster has moved on from.
FIRST_VERSION = 1


class UpcastError(ValueError):
    """An old event cannot be brought to the current shape: a step of its chain is missing, or
    an upcaster failed or returned something other than an object."""

    def __init__(self, event_type: str, version: int, detail: str) -> None:
        self.event_type = event_type
        self.version = version
        self.detail = detail
        super().__init__(f"event type {event_type!r} at schema version {version}: {detail}")


class Upcasters:
    """A registry of upcasters by ``(event type, from version)``. The store keeps one (the
    process-wide ``UPCASTERS`` unless it is given its own); tests make their own."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._current: dict[str, int] = {}

    def register(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Register ``upcaster`` from ``from_version`` to ``from_version + 1`` of
        ``event_type``. A second one for the same step is a ``ValueError``."""
        if from_version < FIRST_VERSION:
            raise ValueError(f"schema versions start at {FIRST_VERSION}, not {from_version}")
        key = (event_type, from_version)
        if key in self._steps:
            raise ValueError(
                f"an upcaster of {event_type!r} from version {from_version} is registered already"
            )
        self._steps[key] = upcaster
        self._current[event_type] = max(self._current.get(event_type, 1), from_version + 1)

    def __bool__(self) -> bool:
        return bool(self._steps)

    @property
    def current_versions(self) -> Mapping[str, int]:
        """The current version of each type that has upcasters (others are at 1)."""
        return dict(self._current)

    def current(self, event_type: str) -> int:
        """The version new events of ``event_type`` are written at."""
        return self._current.get(event_type, FIRST_VERSION)

    def is_stale(self, event_type: str, version: int) -> bool:
        """Whether an event stored at ``version`` needs upcasting to be read."""
        return version < self._current.get(event_type, FIRST_VERSION)

    def upcast(self, event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` of ``event_type`` stored at ``version``, in the current shape. Data at the
        current version or above comes back as it is."""
        current = self.current(event_type)
        while version < current:
            step = self._steps.get((event_type, version))
            if step is None:
                raise UpcastError(
                    event_type, version, f"no upcaster to version {version + 1} is registered"
                )
            try:
                data = step(data)
            except Exception as exc:
                raise UpcastError(
                    event_type, version, f"the upcaster to version {version + 1} failed: {exc}"
                ) from exc
            if not isinstance(data, dict):
                raise UpcastError(
                    event_type,
                    version,
                    f"the upcaster to version {version + 1} returned "
                    f"{type(data).__name__}, not an object",
                )
            version += 1
        return data


#: The process-wide registry: every store opened without its own uses it.
UPCASTERS = Upcasters()


def register_upcaster(
    event_type: str, from_version: int, registry: Upcasters | None = None
) -> Callable[[Upcaster], Upcaster]:
    """Decorator: register the function as the upcaster of ``event_type`` from
    ``from_version`` (in ``UPCASTERS`` unless ``registry`` is given)."""

    def register(upcaster: Upcaster) -> Upcaster:
        (UPCASTERS if registry is None else registry).register(event_type, from_version, upcaster)
        return upcaster

    return register
