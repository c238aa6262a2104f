"""Several servers on one Postgres store (``--shared-store``): each runs the sessions it leases.

The lease primitive (``store/leases.py``, Postgres) against a plain model and under a race; the
shared and the exclusive claim exclude each other; a store without leases refuses to be shared;
and two real servers on one schema: a session of A answers 409 ``session_owned`` on B while A
lives, and once A is SIGKILLed mid-turn and its lease expired, B takes the session over,
recovers it once and goes on with a gapless stream.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sandbox_agent.store import (
    EventStore,
    LeaseDriver,
    LeaseHolder,
    SessionLeases,
    SessionOwned,
    SessionRecord,
    StoreConfigError,
    StoreOwned,
    open_store,
)
from sandbox_agent.testing.consistency import check_store
from sandbox_agent.testing.databases import fresh_store_url, fresh_url
from sandbox_agent.testing.server import (
    OK_PROMPT,
    ServerProcess,
    create,
    events_of,
    problem,
    wait_for,
)

SESSIONS = ("s0", "s1", "s2")
HOLDERS = tuple(
    LeaseHolder(server_id=f"server-{n}", pid=1000 + n, host="host", since=datetime.now(UTC))
    for n in range(3)
)
LIVE, EXPIRED = 60.0, 0.0  # seconds: expires_at = now() + 0 is past for the next statement


def _leases(store: EventStore) -> LeaseDriver:
    driver = store.driver.session_leases()
    assert driver is not None
    return driver


async def _seed(store: EventStore) -> None:
    for session_id in SESSIONS:
        await store.create_session(SessionRecord(id=session_id, agent="mock"))


# -- the primitive against a model ---------------------------------------------------------
holder_ix = st.integers(0, len(HOLDERS) - 1)
session_ix = st.sampled_from(SESSIONS)
operations = st.one_of(
    st.tuples(st.just("acquire"), holder_ix, session_ix, st.booleans()),
    st.tuples(st.just("renew"), holder_ix, st.booleans()),
    st.tuples(st.just("release"), holder_ix, st.none() | session_ix),
    st.tuples(st.just("forget"), holder_ix, session_ix),
    st.tuples(st.just("expired")),
)


async def _run_against_model(driver: LeaseDriver, ops: list[tuple[Any, ...]]) -> None:
    for holder in HOLDERS:  # a clean table for each example
        for session_id in SESSIONS:
            await driver.forget(holder.server_id, session_id)
    rows: dict[str, tuple[str, bool]] = {}  # session -> (holder, live)
    for op in ops:
        name = op[0]
        if name == "acquire":
            holder, session_id, live = HOLDERS[op[1]], op[2], op[3]
            lease = await driver.acquire(session_id, holder, LIVE if live else EXPIRED)
            current = rows.get(session_id)
            if current is None or current[0] == holder.server_id or not current[1]:
                rows[session_id] = (holder.server_id, live)
            assert lease.session_id == session_id
            assert lease.holder.server_id == rows[session_id][0], (op, rows)
            if lease.holder.server_id == holder.server_id:
                assert lease.holder == holder  # pid and host as given
        elif name == "renew":
            holder, live = HOLDERS[op[1]], op[2]
            held = await driver.renew(holder.server_id, LIVE if live else EXPIRED)
            assert held == {s for s, (h, _) in rows.items() if h == holder.server_id}
            for session_id in held:
                rows[session_id] = (holder.server_id, live)
        elif name == "release":
            holder, only = HOLDERS[op[1]], op[2]
            await driver.release(holder.server_id, None if only is None else [only])
            for session_id, (h, _) in list(rows.items()):
                if h == holder.server_id and only in (None, session_id):
                    rows[session_id] = (h, False)
        elif name == "forget":
            holder, session_id = HOLDERS[op[1]], op[2]
            await driver.forget(holder.server_id, session_id)
            if rows.get(session_id, ("", False))[0] == holder.server_id:
                del rows[session_id]
        else:
            expired = await driver.expired(100)
            assert sorted(expired) == sorted(s for s, (_, live) in rows.items() if not live)


@pytest.mark.postgres
def test_the_lease_primitive_follows_the_model(tmp_path: Path) -> None:
    """acquire is a compare-and-set (free, expired or own: taken; live and another's:
    unchanged, that holder answered), renew extends exactly the holder's, release lets them
    expire, expired lists exactly the expired ones."""
    with fresh_url("postgres", tmp_path) as url:
        loop = asyncio.new_event_loop()
        try:
            store = loop.run_until_complete(open_store(url))
            loop.run_until_complete(_seed(store))
            driver = _leases(store)

            @settings(
                max_examples=60,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            )
            @given(st.lists(operations, max_size=25))
            @example(  # a live lease is another's to take only once it expired or was released
                [
                    ("acquire", 0, "s0", True),
                    ("acquire", 1, "s0", True),
                    ("renew", 0, True),
                    ("acquire", 1, "s0", False),
                    ("release", 0, None),
                    ("expired",),
                    ("acquire", 1, "s0", True),
                    ("acquire", 0, "s0", True),
                    ("expired",),
                ]
            )
            def run(ops: list[tuple[Any, ...]]) -> None:
                loop.run_until_complete(_run_against_model(driver, ops))

            run()
            loop.run_until_complete(store.close())
        finally:
            loop.close()


@pytest.mark.postgres
async def test_of_servers_racing_for_an_expired_lease_exactly_one_wins(tmp_path: Path) -> None:
    async with fresh_store_url("postgres", tmp_path) as url:
        stores = [await open_store(url, pool_size=2) for _ in range(6)]
        try:
            await _seed(stores[0])
            racers = [
                (_leases(store), LeaseHolder(f"racer-{n}", n, "host", datetime.now(UTC)))
                for n, store in enumerate(stores)
            ]
            winners = set()
            for _ in range(15):
                leases = await asyncio.gather(
                    *(driver.acquire("s0", holder, LIVE) for driver, holder in racers)
                )
                # Every racer was answered the one winner's lease.
                assert len({lease.holder.server_id for lease in leases}) == 1
                winner = leases[0].holder.server_id
                winners.add(winner)
                # The winner renews; the others still lose; then it lets go.
                driver = racers[0][0]
                assert await driver.renew(winner, LIVE) == {"s0"}
                for other_driver, holder in racers:
                    again = await other_driver.acquire("s0", holder, LIVE)
                    assert again.holder.server_id == winner
                await driver.release(winner, None)
                assert await driver.expired(10) == ["s0"]
            assert winners  # (which racer wins is the database's business)
        finally:
            for store in stores:
                await store.close()


@pytest.mark.postgres
async def test_session_leases_raise_session_owned_naming_the_live_holder(tmp_path: Path) -> None:
    async with fresh_store_url("postgres", tmp_path) as url:
        a, b = await open_store(url), await open_store(url)
        try:
            await _seed(a)
            leases_a, leases_b = await a.share(1.0), await b.share(1.0)
            assert leases_a.heartbeat_seconds == pytest.approx(1 / 3)
            await leases_a.acquire("s0")
            with pytest.raises(SessionOwned) as caught:
                await leases_b.acquire("s0")
            assert caught.value.lease.holder == leases_a.holder
            assert f"pid {leases_a.holder.pid}" in str(caught.value)
            # Not renewed: B takes it over once a second has passed, and A no longer holds it.
            await asyncio.sleep(1.2)
            await leases_b.acquire("s0")
            assert await leases_a.renew() == set()
            assert await leases_b.renew() == {"s0"}
        finally:
            await a.close()
            await b.close()


@pytest.mark.postgres
async def test_sharing_servers_and_an_owning_server_exclude_each_other(tmp_path: Path) -> None:
    async with fresh_store_url("postgres", tmp_path) as url:
        owner, sharer = await open_store(url), await open_store(url)
        try:
            await owner.claim(url)
            with pytest.raises(StoreOwned, match="excludes sharing"):
                await sharer.share(30.0, url)
            await owner.close()
            owner = await open_store(url)
            await sharer.share(30.0, url)
            with pytest.raises(StoreOwned, match="one server per store"):
                await owner.claim(url)
        finally:
            await owner.close()
            await sharer.close()


async def test_a_store_without_leases_cannot_be_shared(tmp_path: Path) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path / 'one.db'}"):
        async with await open_store(url) as store:
            with pytest.raises(StoreConfigError, match="cannot be shared by several servers"):
                await store.share(30.0, url)
    with pytest.raises(ValueError, match="1 to 86400 seconds"):
        SessionLeases(_leases_stub(), 0.5)


def _leases_stub() -> LeaseDriver:
    class Stub(LeaseDriver):
        async def acquire(self, *args: Any) -> Any: ...
        async def renew(self, *args: Any) -> Any: ...
        async def release(self, *args: Any) -> Any: ...
        async def forget(self, *args: Any) -> Any: ...
        async def expired(self, *args: Any) -> Any: ...
        def ownership_lock(self) -> Any: ...

    return Stub()


def test_a_server_refuses_to_share_a_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    server = ServerProcess(url, tmp_path / "server.log", args=("--no-token", "--shared-store"))
    with pytest.raises(RuntimeError, match="exited with"):
        server.start(timeout=60)
    assert server.proc is not None and server.proc.returncode != 0
    assert "cannot be shared by several servers" in server.log()


# -- two real servers ----------------------------------------------------------------------
#: Short, so that a takeover comes soon; long enough that a loaded machine renews in time.
LEASE_SECONDS = 4


def _shared(url: str, log: Path) -> ServerProcess:
    args = ("--no-token", "--shared-store", "--lease-seconds", str(LEASE_SECONDS))
    return ServerProcess(url, log, args=args)


def _run_turn(client: httpx.Client, session_id: str) -> None:
    before = events_of(client, session_id)
    last = before[-1]["sequence"] if before else 0
    reply = client.post(f"/v1/sessions/{session_id}/messages", json={"message": OK_PROMPT})
    assert reply.status_code == 204, reply.text
    wait_for(client, session_id, "turn.ended", after=last, timeout=30)


def _both_permissions_asked(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    """The stream once the mock's ``permission`` turn asked both its requests (it asks them one
    after the other: after the first only, the second may still come)."""
    deadline = time.monotonic() + 30
    while True:
        events = events_of(client, session_id)
        if sum(e["type"] == "permission.requested" for e in events) >= 2:
            return events
        assert time.monotonic() < deadline, [e["type"] for e in events]
        time.sleep(0.02)


def _wait_served(client: httpx.Client, session_id: str, timeout: float) -> float:
    """Poll until the server answers for the session (no longer 409); seconds it took."""
    started = time.monotonic()
    while True:
        reply = client.get(f"/v1/sessions/{session_id}")
        if reply.status_code == 200:
            return time.monotonic() - started
        problem(reply, 409, "session_owned")
        assert time.monotonic() - started < timeout, "never taken over"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_shared_servers_each_run_their_sessions_and_take_over_a_crashed_ones(
    tmp_path: Path,
) -> None:
    with fresh_url("postgres", tmp_path) as url:
        a = _shared(url, tmp_path / "a.log").start()
        b = _shared(url, tmp_path / "b.log").start()
        try:
            with a.client() as ca, b.client() as cb:
                create(ca, "of-a")
                create(cb, "of-b")
                for client, session_id in ((ca, "of-a"), (cb, "of-b")):
                    _run_turn(client, session_id)
                    _run_turn(client, session_id)
                # Each server refuses the other's session, naming its holder...
                for client, session_id, holder in ((cb, "of-a", a), (ca, "of-b", b)):
                    body = problem(client.get(f"/v1/sessions/{session_id}"), 409, "session_owned")
                    assert body["owner"]["pid"] == holder.pid
                    assert body["sessionId"] == session_id and "leaseExpiresAt" in body
                    sent = client.post(
                        f"/v1/sessions/{session_id}/messages", json={"message": OK_PROMPT}
                    )
                    assert problem(sent, 409, "session_owned")["owner"]["pid"] == holder.pid
                    # ...but any server reads any stream.
                    assert events_of(client, session_id)[-1]["type"] == "turn.ended"
                # A's session mid-turn (waiting for its permission answers), then A dies.
                ca.post("/v1/sessions/of-a/messages", json={"message": "permission"})
                before_kill = wait_for(ca, "of-a", "permission.requested")
                a.kill()
                # Right after the crash its lease is still live: B still refuses.
                problem(cb.get("/v1/sessions/of-a"), 409, "session_owned")
                # Once it expired B's heartbeat takes the session over (no request needed).
                resumed = wait_for(cb, "of-a", "session.resumed", timeout=LEASE_SECONDS * 5)
                assert _wait_served(cb, "of-a", timeout=10) >= 0
                events = events_of(cb, "of-a")
                after_kill = [e for e in events if e["sequence"] > before_kill[-1]["sequence"]]
                assert [e["type"] for e in after_kill][-2:] == ["turn.ended", "session.resumed"]
                ended = [e for e in after_kill if e["type"] == "turn.ended"]
                assert [e["data"]["reason"] for e in ended] == ["interrupted"]  # recovered once
                assert resumed[-1]["data"]["reason"] == "server_restart"
                # B runs it on; the stream is gapless and B's own session never noticed.
                _run_turn(cb, "of-a")
                _run_turn(cb, "of-b")
                for session_id in ("of-a", "of-b"):
                    sequences = [e["sequence"] for e in events_of(cb, session_id)]
                    assert sequences == list(range(1, len(sequences) + 1))
                recoveries = [e for e in events_of(cb, "of-a") if e["type"] == "session.resumed"]
                assert len(recoveries) == 1
            assert "sequence_conflict" not in b.log() and "Traceback" not in b.log()
        finally:
            a.kill()
            b.stop()
        check_store(url)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_server_started_beside_a_live_one_leaves_its_sessions_alone(tmp_path: Path) -> None:
    """Recovery at start-up takes up only free or expired leases: a second shared server
    started while the first runs a turn writes nothing into it; a cleanly stopped server's
    sessions are taken over at once (released leases)."""
    with fresh_url("postgres", tmp_path) as url:
        a = _shared(url, tmp_path / "a.log").start()
        try:
            with a.client() as ca:
                create(ca, "live")
                ca.post("/v1/sessions/live/messages", json={"message": "permission"})
                before = _both_permissions_asked(ca, "live")
                b = _shared(url, tmp_path / "b.log").start()
                try:
                    with b.client() as cb:
                        time.sleep(LEASE_SECONDS)  # B's heartbeats ran: still not taken
                        assert events_of(ca, "live") == before
                        for permission in ("mock_1_permission", "mock_1_permission_denied"):
                            reply = ca.post(
                                f"/v1/sessions/live/permissions/{permission}/reply",
                                json={"reply": "once"},
                            )
                            assert reply.status_code == 204, reply.text
                        wait_for(ca, "live", "turn.ended")
                        a.stop()
                        took = _wait_served(cb, "live", timeout=LEASE_SECONDS * 3)
                        assert took >= 0
                        _run_turn(cb, "live")
                finally:
                    b.stop()
        finally:
            a.kill()
        check_store(url)
