"""The ACP endpoint (``/v1/acp``, docs/acp.md) through a real server process: upstream's content
negotiation and error cases (reference 6.1, one test each), the mock agent's answers, every
envelope in the store, and replay from the store after a SIGKILL."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.testing.consistency import check_store
from sandbox_agent.testing.server import ServerProcess, problem

JSON = {"Content-Type": "application/json"}
RELAY_AGENT = shlex.join(
    [sys.executable, str(Path(__file__).parent / "helpers" / "acp_relay_agent.py")]
)
HANG_AGENT = f"{shlex.quote(sys.executable)} -c 'import sys\nfor _ in sys.stdin: pass'"


def rpc(request_id: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def prompt(request_id: int, session: str, text: str) -> dict[str, Any]:
    return rpc(
        request_id, "session/prompt", sessionId=session, prompt=[{"type": "text", "text": text}]
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("acp")
    process = ServerProcess(
        f"sqlite:///{directory / 'server.db'}",
        directory / "server.log",
        args=(
            "--no-token",
            "--sse-ping-seconds",
            "0.2",
            "--acp-request-timeout-ms",
            "1000",
            "--acp-agent",
            f"hang={HANG_AGENT}",
            "--acp-agent",
            f"relay={RELAY_AGENT}",
        ),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
    # Every ACP stream the tests left passes the replay invariant check (replay --check).
    check_store(process.store_url)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def post(client: httpx.Client, server_id: str, message: Any, **kwargs: Any) -> httpx.Response:
    return client.post(
        f"/v1/acp/{server_id}", content=json.dumps(message), **{"headers": JSON, **kwargs}
    )


def sse_frames(
    client: httpx.Client, server_id: str, count: int, **headers: str
) -> list[dict[str, Any]]:
    """The first ``count`` message frames of the server's stream: ``{id, event, data}``."""
    frames: list[dict[str, Any]] = []
    with client.stream(
        "GET", f"/v1/acp/{server_id}", headers={"Accept": "text/event-stream", **headers}
    ) as r:
        assert r.status_code == 200, r.read()
        current: dict[str, Any] = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if "data" in current:
                    frames.append(current)
                    if len(frames) == count:
                        return frames
                current = {}
                continue
            field, _, value = line.partition(":")
            current[field] = json.loads(value.strip()) if field == "data" else value.strip()
    return frames


def start(client: httpx.Client, server_id: str) -> str:
    """initialize + session/new on a fresh mock server; the ACP session id."""
    r = post(client, server_id, rpc(1, "initialize", protocolVersion=1), params={"agent": "mock"})
    assert r.status_code == 200, r.text
    r = post(client, server_id, rpc(2, "session/new", cwd="/", mcpServers=[]))
    session: str = r.json()["result"]["sessionId"]
    return session


# -- negotiation and errors (reference 6.1) -----------------------------------------------------
def test_first_post_without_agent_is_400(client: httpx.Client) -> None:
    body = problem(post(client, "no-agent", rpc(1, "initialize")), 400, "invalid_request")
    assert body["detail"] == (
        "invalid request: missing required 'agent' query parameter for first POST to "
        "/v1/acp/no-agent"
    )


def test_post_of_other_content_type_is_415(client: httpx.Client) -> None:
    r = client.post(
        "/v1/acp/ct?agent=mock",
        content=json.dumps(rpc(1, "initialize")),
        headers={"Content-Type": "text/plain"},
    )
    problem(r, 415, "unsupported_media_type")


def test_post_accepting_no_json_is_406(client: httpx.Client) -> None:
    r = post(
        client,
        "acc",
        rpc(1, "initialize"),
        params={"agent": "mock"},
        headers={**JSON, "Accept": "text/html"},
    )
    problem(r, 406, "not_acceptable")


def test_post_accept_wildcards_and_absent_are_fine(client: httpx.Client) -> None:
    for n, accept in enumerate(["*/*", "application/*", "text/html, application/json;q=0.5"]):
        r = post(
            client,
            "wild",
            rpc(n, "x"),
            params={"agent": "mock"},
            headers={**JSON, "Accept": accept},
        )
        assert r.status_code == 200, (accept, r.text)
    r = client.post(
        "/v1/acp/wild",
        content=json.dumps(rpc(9, "x")),
        headers={"Content-Type": "application/json"},
    )
    assert r.json()["result"] == {"ok": True, "echoedMethod": "x"}


def test_body_not_an_object_is_400(client: httpx.Client) -> None:
    problem(post(client, "arr", [1, 2], params={"agent": "mock"}), 400, "invalid_request")


def test_other_agent_on_a_server_is_409(client: httpx.Client) -> None:
    start(client, "conflict")
    r = post(client, "conflict", rpc(3, "x"), params={"agent": "acp:hang"})
    problem(r, 409, "conflict")


def test_sse_accepting_no_event_stream_is_406(client: httpx.Client) -> None:
    start(client, "sse406")
    r = client.get("/v1/acp/sse406", headers={"Accept": "application/json"})
    problem(r, 406, "not_acceptable")


def test_sse_of_unknown_server_is_404(client: httpx.Client) -> None:
    problem(client.get("/v1/acp/nobody"), 404, "acp_server_not_found")


def test_bad_last_event_id_is_400(client: httpx.Client) -> None:
    start(client, "badid")
    r = client.get("/v1/acp/badid", headers={"Last-Event-ID": "-3"})
    body = problem(r, 400, "invalid_request")
    assert body["detail"] == "invalid request: Last-Event-ID must be a positive integer"


def test_request_the_agent_never_answers_is_504(client: httpx.Client) -> None:
    r = post(client, "hung", rpc(1, "initialize"), params={"agent": "acp:hang"})
    problem(r, 504, "timeout")


def test_unknown_agent_is_400(client: httpx.Client) -> None:
    problem(post(client, "unk", rpc(1, "x"), params={"agent": "nope"}), 400, "unsupported_agent")


def test_delete_is_idempotent_and_forgets_the_agent(client: httpx.Client) -> None:
    start(client, "del")
    assert client.delete("/v1/acp/del").status_code == 204
    assert client.delete("/v1/acp/del").status_code == 204
    problem(client.get("/v1/acp/del"), 404, "acp_server_not_found")
    problem(post(client, "del", rpc(1, "x")), 400, "invalid_request")
    # The same id again: a new server, the old stream kept (ended) in the store.
    assert post(client, "del", rpc(1, "x"), params={"agent": "mock"}).status_code == 200
    ids = {s["sessionId"] for s in client.get("/v1/sessions").json()["sessions"]}
    assert {"acp-del", "acp-del-2"} <= ids


# -- the mock agent, the stream, the store ------------------------------------------------------
def test_prompt_round_trip_and_stream(client: httpx.Client) -> None:
    session = start(client, "flow")
    r = post(client, "flow", prompt(3, session, "hello"))
    assert r.status_code == 200
    assert r.json() == {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn"}}
    note = {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session}}
    r = post(client, "flow", note)
    assert r.status_code == 202 and r.content == b""
    frames = sse_frames(client, "flow", 4)
    # What the agent wrote, responses included, in order; ids strictly increasing.
    assert [f["data"].get("id") for f in frames] == [1, 2, None, 3]
    assert frames[2]["data"]["params"]["update"]["content"]["text"] == "mock: hello"
    assert all(f["event"] == "message" for f in frames)
    ids = [int(f["id"]) for f in frames]
    assert ids == sorted(set(ids))
    later = sse_frames(client, "flow", 2, **{"Last-Event-ID": str(ids[1])})
    assert [int(f["id"]) for f in later] == ids[2:]
    servers = client.get("/v1/acp").json()["servers"]
    assert "flow" in [s["serverId"] for s in servers]
    assert servers == sorted(servers, key=lambda s: s["serverId"])
    # The store holds every envelope both ways, and the turn as universal events.
    events = client.get("/v1/sessions/acp-flow/events").json()["events"]
    envelopes = [
        (e["data"]["direction"], e["data"]["message"]) for e in events if e["type"] == "acp.message"
    ]
    assert [d for d, _ in envelopes] == ["client", "agent"] * 3 + ["agent", "client"]
    assert envelopes[-1][1] == note
    types = [e["type"] for e in events if e["type"] != "acp.message"]
    assert types == [
        "session.started",
        "turn.started",
        "item.started",
        "item.completed",
        "item.started",
        "item.delta",
        "item.completed",
        "turn.ended",
    ]


def test_relay_to_an_acp_agent_process(client: httpx.Client) -> None:
    """An ACP agent process (``--acp-agent``, as ``acp:claude`` ...): envelopes relayed both
    ways, its request answered by the client, its garbage and its exit as upstream's
    ``_adapter/*`` notifications, and the turn, permission and error as universal events."""
    r = post(client, "relay", rpc(1, "initialize", protocolVersion=1), params={"agent": "relay"})
    assert r.json()["result"]["protocolVersion"] == 1
    session = post(client, "relay", rpc(2, "session/new", cwd="/", mcpServers=[])).json()
    session_id = session["result"]["sessionId"]
    r = post(client, "relay", rpc(3, "nope"))
    assert r.status_code == 200 and r.json()["error"]["code"] == -32601
    with ThreadPoolExecutor(1) as pool:
        turn = pool.submit(post, client, "relay", prompt(4, session_id, "ask"))
        asked = sse_frames(client, "relay", 5)
        assert asked[-2]["data"]["method"] == "_adapter/invalid_stdout"
        assert asked[-2]["data"]["params"]["raw"] == "this is not JSON"
        request = asked[-1]["data"]
        assert request["method"] == "session/request_permission"
        selected = {"outcome": {"outcome": "selected", "optionId": "yes"}}
        answer = {"jsonrpc": "2.0", "id": request["id"], "result": selected}
        assert post(client, "relay", answer).status_code == 202
        end = {"jsonrpc": "2.0", "id": 4, "result": {"stopReason": "end_turn"}}
        assert turn.result().json() == end
    assert post(client, "relay", {"jsonrpc": "2.0", "method": "exit"}).status_code == 202
    frames = sse_frames(client, "relay", 8)
    assert frames[5]["data"]["params"]["update"]["content"]["text"] == "chose yes"
    assert frames[7]["data"] == {
        "jsonrpc": "2.0",
        "method": "_adapter/agent_exited",
        "params": {"success": False, "code": 3},
    }
    events = client.get("/v1/sessions/acp-relay/events").json()["events"]
    permissions = [
        (e["type"], e["data"]["status"]) for e in events if e["type"].startswith("permission.")
    ]
    assert permissions == [("permission.requested", "requested"), ("permission.resolved", "accept")]
    assert [e["data"]["reason"] for e in events if e["type"] == "turn.ended"] == ["completed"]
    # The next POST starts the agent again, initialized and its session loaded as before
    # (the agent refuses a prompt otherwise); the client sees none of that exchange.
    r = post(client, "relay", prompt(6, session_id, "again"))
    assert r.json() == {"jsonrpc": "2.0", "id": 6, "result": {"stopReason": "end_turn"}}
    after = sse_frames(client, "relay", 2, **{"Last-Event-ID": frames[7]["id"]})
    assert [f["data"].get("id") for f in after] == [None, 6]
    assert after[0]["data"]["params"]["update"]["content"]["text"] == "relay: again"
    events = client.get("/v1/sessions/acp-relay/events").json()["events"]
    restored = [e["data"]["message"] for e in events if e["data"].get("restore")]
    assert [m.get("method") for m in restored] == [
        "initialize",
        None,
        "session/load",
        "session/update",
        None,
    ]
    assert restored[2]["params"]["sessionId"] == session_id


def test_sse_heartbeat(client: httpx.Client) -> None:
    start(client, "beat")
    with client.stream("GET", "/v1/acp/beat") as r:
        lines = r.iter_lines()
        assert any(line == ": heartbeat" for _, line in zip(range(20), lines, strict=False))


def test_sse_of_a_deleted_server_ends(client: httpx.Client) -> None:
    start(client, "ends")
    with client.stream("GET", "/v1/acp/ends") as r:
        client.delete("/v1/acp/ends")
        body = r.read().decode()
    assert body.count("event: message") == 2


def test_slow_reader_gets_every_message_in_order(client: httpx.Client) -> None:
    session = start(client, "slow")
    with client.stream("GET", "/v1/acp/slow") as r:
        for n in range(60):  # written while the subscriber reads nothing
            post(client, "slow", prompt(10 + n, session, "x" * 2000))
        client.delete("/v1/acp/slow")
        frames = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    responses = [f["id"] for f in frames if "id" in f]
    assert responses == [1, 2, *range(10, 70)]
    assert len(frames) == 2 + 2 * 60


@pytest.mark.slow  # a restart: about 5 s
def test_replay_after_sigkill_misses_nothing(tmp_path: Path) -> None:
    args = ("--no-token", "--acp-agent", f"relay={RELAY_AGENT}")
    server = ServerProcess(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "s.log", args=args).start()
    try:
        with server.client() as c:
            init = rpc(1, "initialize", protocolVersion=1)
            assert post(c, "crash", init, params={"agent": "relay"}).status_code == 200
            r = post(c, "crash", rpc(2, "session/new", cwd="/", mcpServers=[]))
            session = r.json()["result"]["sessionId"]
            post(c, "crash", prompt(3, session, "before"))
            frames = sse_frames(c, "crash", 4)
        server.kill()
        server.restart()
        with server.client() as c:
            assert [s["serverId"] for s in c.get("/v1/acp").json()["servers"]] == ["crash"]
            # A client that had seen the first two reconnects with its Last-Event-ID.
            again = sse_frames(c, "crash", 2, **{"Last-Event-ID": frames[1]["id"]})
            assert again == frames[2:]
            # The next POST starts a new agent process, initialized and its session loaded.
            r = post(c, "crash", prompt(4, session, "after"))
            assert r.json() == {"jsonrpc": "2.0", "id": 4, "result": {"stopReason": "end_turn"}}
            latest = sse_frames(c, "crash", 2, **{"Last-Event-ID": frames[3]["id"]})
            assert latest[0]["data"]["params"]["update"]["content"]["text"] == "relay: after"
            check = c.get("/v1/sessions/acp-crash/events").json()["events"]
            assert [e["type"] for e in check].count("turn.ended") == 2
    finally:
        server.stop()
    check_store(server.store_url)


@pytest.mark.slow  # four CLI processes: about 3 s
def test_cli_post_stream_close(server: ServerProcess) -> None:
    def cli(*args: str) -> list[str]:
        return [sys.executable, "-m", "sandbox_agent", "api", "acp", *args, "-e", server.url, "-n"]

    init = json.dumps(rpc(1, "initialize", protocolVersion=1))
    out = subprocess.run(
        cli("post", "--server-id", "cli", "--agent", "mock", "--json", init),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["result"]["protocolVersion"] == 1
    note = json.dumps({"jsonrpc": "2.0", "method": "hello"})
    done = subprocess.run(cli("post", "--server-id", "cli", "--json", note), capture_output=True)
    assert done.returncode == 0 and done.stdout == b""
    with subprocess.Popen(
        cli("stream", "--server-id", "cli", "--last-event-id", "0"),
        stdout=subprocess.PIPE,
        text=True,
    ) as stream:
        assert stream.stdout is not None
        assert stream.stdout.readline().startswith(": connected")
        subprocess.run(cli("close", "--server-id", "cli"), check=True)
        text = stream.stdout.read()
    assert stream.returncode == 0
    assert '"protocolVersion":1' in text and "event: message" in text
    missing = subprocess.run(cli("stream", "--server-id", "cli"), capture_output=True, text=True)
    assert missing.returncode == 1 and "unknown ACP server: cli" in missing.stderr
