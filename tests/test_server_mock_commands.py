"""Every mock command through a real server process, over real HTTP and SSE: the upstream v0.1
event kinds, in order, with the same item ids (the table of ``mock_commands``), on both SSE
endpoints and in the stored stream."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from sandbox_agent.events import UniversalEvent
from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import ServerProcess, create, events_of, running, stream_turn

from agent_contract import summary
from mock_commands import COMMANDS, opening

#: What ends a ``messages/stream`` response (v0.1, ``spec/http-api.md``).
TERMINAL = (
    "turn.ended",
    "session.ended",
    "error",
    "agent.unparsed",
    "permission.requested",
    "question.requested",
)

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("commands")
    with running(f"sqlite:///{tmp / 's.db'}", tmp / "server.log") as process:
        yield process


def _lines(events: list[dict[str, Any]]) -> list[str]:
    return summary([UniversalEvent.model_validate(e) for e in events])


def _until_terminal(lines: list[str]) -> list[str]:
    end = next(n for n, line in enumerate(lines, 1) if line.split(" ")[0] in TERMINAL)
    return lines[:end]


def _follow(client: httpx.Client, session_id: str, after: int, count: int) -> list[dict[str, Any]]:
    """``count`` events of ``GET .../events/sse`` after ``after``, checking the framing."""
    got: list[dict[str, Any]] = []
    params = {"offset": after}
    with connect_sse(client, "GET", f"/v1/sessions/{session_id}/events/sse", params=params) as sse:
        assert sse.response.status_code == 200
        for message in sse.iter_sse():
            event = json.loads(message.data)
            assert message.id == str(event["sequence"]) and message.event == "message"
            got.append(event)
            if len(got) == count:
                break
    return got


@pytest.mark.parametrize(("prompt", "expected"), COMMANDS, ids=[c[0][:40] for c in COMMANDS])
def test_each_mock_command_streams_upstreams_event_kinds_in_order(
    server: ServerProcess, prompt: str, expected: list[str]
) -> None:
    session_id = f"cmd-{next(_ids)}"
    whole = opening() + expected
    with server.client() as client:
        create(client, session_id)
        # messages/stream: this turn's events up to its first terminal one, nothing before.
        streamed = stream_turn(client, session_id, prompt)
        assert streamed[0]["sequence"] == 2
        assert _lines(streamed) == _until_terminal(whole)
        # events/sse from after session.started: the whole turn, as stored.
        followed = _follow(client, session_id, 1, len(whole))
        assert _lines(followed) == whole
        assert followed[: len(streamed)] == streamed
        time.sleep(0.2)  # the mock runs at zero delay: anything more would be stored by now
        stored = events_of(client, session_id)
        assert stored[1:] == followed, "the command produced more than its kinds"
        check_stream(stored)


def test_the_table_covers_every_command_of_the_mock() -> None:
    from sandbox_agent.agents.mock_script import _COMMANDS, _EXACT

    prompts = {prompt.strip().lower() for prompt, _ in COMMANDS}
    first_words = {prompt.split()[0].lower() for prompt, _ in COMMANDS if prompt.split()}
    assert set(_EXACT) <= prompts
    assert set(_COMMANDS) <= first_words


def test_no_command_left_an_error_in_the_server_log(server: ServerProcess) -> None:
    # Runs after the commands above (file order): none of them may have raised in the server.
    assert "Traceback" not in server.log()
