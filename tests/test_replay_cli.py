"""The real ``sandbox-agent`` command (a subprocess) on a real SQLite and a real Postgres
store: replay, check, diff, follow, export and import."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from sandbox_agent.store import open_store
from sandbox_agent.testing.databases import driver_params, fresh_url

from replay_helpers import Stream, canonical_session, drafts_of, write_sqlite

GOLDEN = Path(__file__).parent / "golden"
BIN = Path(sys.executable).parent / "sandbox-agent"
COMMAND = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "sandbox_agent"]


def broken_session() -> Stream:
    s = Stream("broken").started().turn("t1")
    s.delta("a1", "orphan")
    s.turn("t2")
    return s


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "SANDBOX_AGENT_DATA_DIR": str(tmp_path / "data"), "NO_COLOR": "1"}


@pytest.fixture(params=driver_params(("sqlite", "postgres")))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store holding the canonical and the broken session: a SQLite file, or a fresh
    Postgres schema (the CLI must work on both)."""
    with fresh_url(request.param, tmp_path) as url:
        write_sqlite(url, canonical_session().events, broken_session().events)
        yield url


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(("fmt", "suffix"), [("markdown", "md"), ("text", "txt"), ("json", "json")])
def test_replay_prints_the_golden_transcript(
    env: dict[str, str], url: str, fmt: str, suffix: str
) -> None:
    done = cli(env, "replay", "s1", "--store", url, "--format", fmt)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (GOLDEN / f"canonical.{suffix}").read_text(encoding="utf-8")


def test_replay_at_a_sequence_shows_the_state_then(env: dict[str, str], url: str) -> None:
    done = cli(env, "replay", "s1", "--store", url, "--at", "12", "--format", "state")
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert (state["last_sequence"], state["status"]) == (12, "awaiting_input")
    assert list(state["pending_permissions"]) == ["p1"]
    text = cli(env, "replay", "s1", "--store", url, "--at", "12", "-f", "text").stdout
    assert "Tool result · call call_1 (#10)" in text and "(#16)" not in text


def test_store_defaults_to_the_environment(env: dict[str, str], url: str) -> None:
    done = cli({**env, "SANDBOX_AGENT_STORE": url}, "replay", "s1", "--at", "3", "-f", "text")
    assert done.returncode == 0, done.stderr
    assert "User [in_progress] (#3): Please fix the greeting in hello.py" in done.stdout


def test_check_exits_0_on_a_good_stream(env: dict[str, str], url: str) -> None:
    done = cli(env, "replay", "s1", "--store", url, "--check")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no anomalies: session s1, 32 events checked\n"


def test_check_exits_1_and_lists_anomalies_of_a_broken_stream(
    env: dict[str, str], url: str
) -> None:
    done = cli(env, "replay", "broken", "--store", url, "--check")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "2 anomalies in session broken (4 events checked):",
        "  #3 delta_before_start: delta for item 'a1' before its start",
        "  #4 turn_started_while_running: turn started while turn t1 from sequence 2 runs",
    ]
    as_json = cli(env, "replay", "broken", "--store", url, "--check", "--json", "--at", "3")
    assert as_json.returncode == 1
    assert [a["kind"] for a in json.loads(as_json.stdout)["anomalies"]] == ["delta_before_start"]


def test_check_of_several_sessions_or_all_reports_each_and_fails_on_any(
    env: dict[str, str], url: str
) -> None:
    good = cli(env, "replay", "s1", "s1", "--store", url, "--check")
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1] == "2 session(s) checked, 0 with anomalies"
    every = cli(env, "replay", "--all", "--store", url, "--check")
    assert every.returncode == 1
    lines = every.stdout.splitlines()
    assert "no anomalies: session s1, 32 events checked" in lines
    assert "2 anomalies in session broken (4 events checked):" in lines
    assert lines[-1] == "2 session(s) checked, 1 with anomalies"
    as_json = cli(env, "replay", "--all", "--store", url, "--check", "--json")
    reports = {r["session_id"]: r for r in json.loads(as_json.stdout)}
    assert reports["s1"]["anomalies"] == [] and len(reports["broken"]["anomalies"]) == 2
    missing = cli(env, "replay", "s1", "nobody", "--store", url, "--check")
    assert missing.returncode == 1 and "nobody" in missing.stderr
    refused = [
        ["s1", "--all", "--check"],  # ids or --all, not both
        ["--all"],  # --all only checks
        ["s1", "broken"],  # several ids only for --check
        [],
    ]
    for args in refused:
        done = cli(env, "replay", *args, "--store", url)
        assert done.returncode == 2, (args, done.stdout)


def test_diff_shows_what_changed_between_two_sequences(env: dict[str, str], url: str) -> None:
    done = cli(env, "replay", "s1", "--store", url, "--diff", "11", "25")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "from sequence 11 to 25: +14 event(s)"
    assert "  + permission p1 resolved: accept" in lines
    assert "  + turn t1 ended at 20 (completed)" in lines
    assert "  + question q1 answered 'pytest'" in lines
    data = json.loads(
        cli(env, "replay", "s1", "--store", url, "--diff", "11", "25", "--json").stdout
    )
    assert [i["item_id"] for i in data["items_added"]] == ["c2r", "a1", "u2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "error: session 'nobody' not found"),
        (
            ["s1", "--at", "99"],
            "error: session 's1' ends at sequence 32; sequence 99 is past the end",
        ),
        (["s1", "--diff", "1", "99"], "sequence 99 is past the end"),
    ],
)
def test_replay_errors_are_one_clear_line(
    env: dict[str, str], url: str, args: list[str], message: str
) -> None:
    done = cli(env, "replay", *args, "--store", url)
    assert done.returncode == 1
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_replay_of_a_store_that_cannot_be_opened_fails_clearly(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = cli(env, "replay", "s1", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 1 and "no store at" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    bad = cli(env, "replay", "s1", "--store", "nosuch://x")
    assert bad.returncode == 1 and "unknown store driver 'nosuch'" in bad.stderr


def test_export_then_import_gives_identical_events_and_reimport_adds_nothing(
    env: dict[str, str], url: str, tmp_path: Path
) -> None:
    out = tmp_path / "sessions.jsonl"
    second = f"sqlite:///{tmp_path / 'second.db'}"
    done = cli(env, "export", "s1", "broken", "--store", url, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "exported 2 session(s), 36 event(s)" in done.stdout
    first = cli(env, "import", str(out), "--store", second)
    assert first.returncode == 0, first.stderr
    assert "2 created, 36 event(s) written, 0 already present" in first.stdout
    again = cli(env, "import", str(out), "--store", second, "--json")
    assert json.loads(again.stdout) == {
        "sessions": ["s1", "broken"],
        "created": [],
        "events_written": 0,
        "events_skipped": 36,
    }

    async def events(store_url: str) -> list[list[dict[str, object]]]:
        async with await open_store(store_url) as store:
            return [
                [e.model_dump(mode="json") for e in await store.read(session)]
                for session in ("s1", "broken")
            ]

    assert asyncio.run(events(second)) == asyncio.run(events(url))


def test_export_of_an_unknown_session_leaves_no_file(
    env: dict[str, str], url: str, tmp_path: Path
) -> None:
    out = tmp_path / "x.jsonl"
    done = cli(env, "export", "s1", "nobody", "--store", url, "-o", str(out))
    assert done.returncode == 1 and "session 'nobody' not found" in done.stderr
    assert not out.exists() and list(tmp_path.glob(".x.jsonl*")) == []


def pump(stream: IO[str] | None) -> queue.Queue[str]:
    """The lines of ``stream`` as they come, read by a thread."""
    found: queue.Queue[str] = queue.Queue()
    assert stream is not None
    threading.Thread(target=lambda: [found.put(line) for line in stream], daemon=True).start()
    return found


def test_follow_prints_events_appended_by_another_process(env: dict[str, str], url: str) -> None:
    follower = subprocess.Popen(
        [*COMMAND, "replay", "broken", "--store", url, "--follow", "--at", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = pump(follower.stdout)
    problems = pump(follower.stderr)
    try:
        assert lines.get(timeout=30).startswith("#3 ")
        assert lines.get(timeout=10).startswith("#4 2025-03-01T12:00:01.000000Z turn.started")
        more = broken_session()
        more.turn_end("t2").ended()
        tail = more.events[4:]

        async def append() -> None:
            async with await open_store(url) as store:
                await store.append("broken", drafts_of(tail), expected_sequence=4)

        asyncio.run(append())
        assert lines.get(timeout=10).startswith(
            "#5 2025-03-01T12:00:01.250000Z turn.ended [agent] t2"
        )
        assert " session.ended [daemon] completed by agent" in lines.get(timeout=10)
        reported = [problems.get(timeout=10) for _ in range(2)]
        assert reported[0].startswith("anomaly #3 delta_before_start")
        assert reported[1].startswith("anomaly #4 turn_started_while_running")
    finally:
        follower.terminate()
        follower.wait(timeout=10)
