"""Checks that a backend's copy of a session is the server's, and that streams replay cleanly.

``assert_consistent(local_store, server_url, session_id)`` is what a backend built on the SDK
asserts after anything went wrong (a crash, a restart, a cut connection, a store fault): its
local store (the SDK's mirror) holds the server's stream of the session, event for event, and
both replay without an anomaly (the checker of ``sandbox-agent replay --check``).

``check_events`` / ``check_stream`` / ``check_store`` are the replay check alone, over typed
events, over events as the API returns them (JSON), and over every session of a store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Collection, Sequence
from typing import Any, Protocol

import httpx

from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import replay
from sandbox_agent.sdk.mirror import remote_offset
from sandbox_agent.store import EventStore, SessionNotFound, open_store

__all__ = [
    "AssertConsistent",
    "assert_consistent",
    "assert_same_stream",
    "check_events",
    "check_store",
    "check_store_async",
    "check_stream",
    "server_events",
]

PAGE = 1000


def check_events(
    events: Sequence[UniversalEvent], *, allow: Collection[str] = (), where: str = "stream"
) -> None:
    """The stream is numbered 1..N without a gap and the replay invariant checker finds no
    anomaly (but of the kinds in ``allow``). ``AssertionError`` says which promise broke."""
    _check_sequences(events, where)
    anomalies = [a for a in replay(events).anomalies if a.kind not in allow]
    if anomalies:
        lines = "\n".join(f"  #{a.sequence} {a.kind}: {a.message}" for a in anomalies)
        raise AssertionError(
            f"{where}: {len(anomalies)} replay anomal{'y' if len(anomalies) == 1 else 'ies'} "
            f"in {len(events)} events:\n{lines}"
        )


def _check_sequences(events: Sequence[UniversalEvent], where: str) -> None:
    sequences = [event.sequence for event in events]
    for expected, sequence in enumerate(sequences, start=1):
        if sequence != expected:
            raise AssertionError(
                f"{where}: sequences are not 1..{len(events)}: expected {expected}, "
                f"found {sequence} (sequences {_span(sequences)})"
            )


def check_stream(events: Sequence[dict[str, Any]], *, allow: Collection[str] = ()) -> None:
    """``check_events`` over events as the API returns them (JSON objects)."""
    check_events([UniversalEvent.model_validate(e) for e in events], allow=allow)


def check_store(store_url: str, *, allow: Collection[str] = ()) -> None:
    """``check_events`` over every session of the store at ``store_url`` (sync: it runs its own
    event loop; ``await check_store_async`` inside one)."""
    asyncio.run(check_store_async(store_url, allow=allow))


async def check_store_async(store_url: str, *, allow: Collection[str] = ()) -> None:
    async with await open_store(store_url) as store:
        for record in await store.all_sessions():
            events = await store.read(record.id, after=0, limit=None)
            check_events(events, allow=allow, where=f"session {record.id!r} of {store_url}")


async def server_events(
    server_url: str, session_id: str, token: str | None = None, *, include_raw: bool = False
) -> list[UniversalEvent]:
    """Every event of the session on the server (``GET /v1/sessions/{id}/events``, all pages).
    ``AssertionError`` when the server answers anything but 200."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    events: list[UniversalEvent] = []
    async with httpx.AsyncClient(base_url=server_url, headers=headers, timeout=30) as http:
        while True:
            params: dict[str, Any] = {"offset": len(events), "limit": PAGE}
            if include_raw:
                params["include_raw"] = "true"
            response = await http.get(f"/v1/sessions/{session_id}/events", params=params)
            if response.status_code != 200:
                raise AssertionError(
                    f"the server at {server_url} answered {response.status_code} for the events "
                    f"of session {session_id!r}: {response.text[:500]}"
                )
            body = response.json()
            events.extend(UniversalEvent.model_validate(e) for e in body["events"])
            if not body.get("hasMore") or not body["events"]:
                return events


async def assert_consistent(
    local_store: EventStore,
    server_url: str,
    session_id: str,
    token: str | None = None,
    *,
    timeout: float = 5.0,
    allow: Collection[str] = (),
) -> None:
    """The local store's stream of ``session_id`` is the server's: the same event ids, at the
    same sequences, of the same types; and both streams pass ``check_events``.

    A local stream that is a strict prefix of the server's is a mirror still catching up: the
    comparison is retried for up to ``timeout`` seconds before it fails. After a restore on a
    new sandbox (a ``session.resumed`` with reason ``sandbox_replaced`` in the local stream)
    the server's stream is compared with the local events after that point, where the SDK
    stores them (remote sequence ``k`` at local ``L + k - 1``; the remote ``session.started``
    is not copied). ``allow`` lists replay anomaly kinds to tolerate. Raises ``AssertionError``
    saying exactly what differs.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            local = await local_store.read(session_id, after=0, limit=None)
        except SessionNotFound:
            raise AssertionError(f"session {session_id!r} is not in the local store") from None
        remote = await server_events(server_url, session_id, token)
        difference, lagging = _compare(local, remote)
        if difference is None:
            break
        if not lagging or time.monotonic() >= deadline:
            raise AssertionError(
                f"session {session_id!r}: the local store and the server at {server_url} "
                f"differ{' (still, after ' + str(timeout) + ' s)' if lagging else ''}:\n"
                f"{difference}"
            )
        await asyncio.sleep(0.05)
    check_events(local, allow=allow, where=f"session {session_id!r} in the local store")
    check_events(remote, allow=allow, where=f"session {session_id!r} on the server")


class AssertConsistent(Protocol):
    """The type of ``assert_consistent`` (what the fixture of that name returns)."""

    def __call__(
        self,
        local_store: EventStore,
        server_url: str,
        session_id: str,
        token: str | None = None,
        *,
        timeout: float = 5.0,
        allow: Collection[str] = (),
    ) -> Awaitable[None]: ...


def _compare(
    local: Sequence[UniversalEvent], remote: Sequence[UniversalEvent]
) -> tuple[str | None, bool]:
    """What differs (None: nothing) and whether the local side only lags behind."""
    offset = remote_offset(replay(local)) if local else 0
    if offset:
        # Before the restore the local stream came from another sandbox: not comparable.
        mine = [e for e in local if e.sequence > offset + 1]
        theirs = [e for e in remote if e.sequence > 1]
        intro = (
            f"  (restored on this server at local sequence {offset + 1}: local events after it "
            f"against server events from 2, local = server + {offset})\n"
        )
    else:
        mine, theirs, intro = list(local), list(remote), ""
    keys_mine = [(e.sequence - offset, e.event_id, e.type) for e in mine]
    keys_theirs = [(e.sequence, e.event_id, e.type) for e in theirs]
    if keys_mine == keys_theirs:
        return None, False
    counts = (
        f"  local: {len(local)} events ({_span([e.sequence for e in local])}), "
        f"server: {len(remote)} events ({_span([e.sequence for e in remote])})\n"
    )
    common = next(
        (i for i, (a, b) in enumerate(zip(keys_mine, keys_theirs, strict=False)) if a != b),
        None,
    )
    if common is not None:
        return (
            intro
            + counts
            + f"  first difference:\n    local:  {_describe(mine[common])}\n"
            + f"    server: {_describe(theirs[common])}",
            False,
        )
    if len(mine) < len(theirs):
        missing = ", ".join(_describe(e) for e in theirs[len(mine) : len(mine) + 5])
        more = f" and {len(theirs) - len(mine) - 5} more" if len(theirs) - len(mine) > 5 else ""
        return intro + counts + f"  missing locally: {missing}{more}", True
    extra = ", ".join(_describe(e) for e in mine[len(theirs) : len(theirs) + 5])
    more = f" and {len(mine) - len(theirs) - 5} more" if len(mine) - len(theirs) > 5 else ""
    return intro + counts + f"  only in the local store: {extra}{more}", False


def _describe(event: UniversalEvent) -> str:
    return f"#{event.sequence} {event.type} {event.event_id}"


def _span(sequences: Sequence[int]) -> str:
    if not sequences:
        return "none"
    return f"{sequences[0]}..{sequences[-1]}"


def assert_same_stream(local: Sequence[UniversalEvent], remote: Sequence[UniversalEvent]) -> None:
    """The local copy is the server's stream, whole: the same events with the same content
    (raw payloads too, when both sides have them), in the same order, numbered 1..N."""
    _check_sequences(local, "the local stream")
    dumped = [e.model_dump(mode="json") for e in local]
    theirs = [e.model_dump(mode="json") for e in remote]
    if dumped != theirs:
        at = next(
            (i for i, (a, b) in enumerate(zip(dumped, theirs, strict=False)) if a != b),
            min(len(dumped), len(theirs)),
        )
        raise AssertionError(
            f"the streams differ at index {at} (local {len(dumped)} events, "
            f"server {len(theirs)}):\n  local:  {dumped[at] if at < len(dumped) else None}\n"
            f"  server: {theirs[at] if at < len(theirs) else None}"
        )
