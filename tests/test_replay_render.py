"""Transcripts (against golden files), diffs and restore text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sandbox_agent.replay import diff, format_diff, render_transcript, replay, restore_text
from sandbox_agent.replay.restore import HEADER

from replay_helpers import Stream, canonical_session

GOLDEN = Path(__file__).parent / "golden"
SUFFIX = {"markdown": "md", "text": "txt", "json": "json"}


def golden(name: str, actual: str) -> None:
    """Compare with ``tests/golden/name``; ``UPDATE_GOLDEN=1`` rewrites it instead."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["markdown", "text", "json"])
def test_transcript_matches_the_golden_file(fmt: str) -> None:
    state = replay(canonical_session().events)
    golden(f"canonical.{SUFFIX[fmt]}", render_transcript(state, fmt))  # type: ignore[arg-type]


def test_transcript_of_a_broken_stream_matches_the_golden_file() -> None:
    s = Stream().started().turn("t1").user("u1", "hi")
    s.delta("a9", "orphan ").delta("a9", "text")
    s.add("agent.unparsed", {"error": "not json", "location": "stdout"})
    s.turn("t2").ended("error", "daemon", message="agent crashed", stderr={"tail": "Traceback ..."})
    golden("broken.md", render_transcript(replay(s.events), "markdown"))


def test_transcript_hides_private_reasoning_unless_asked() -> None:
    state = replay(canonical_session().events)
    assert "secret chain of thought" not in render_transcript(state, "markdown")
    assert "secret chain of thought" in render_transcript(state, "text", private_reasoning=True)
    assert "The greeting is misspelled." in render_transcript(state, "text")


def test_json_transcript_lists_entries_in_stream_order() -> None:
    data = json.loads(render_transcript(replay(canonical_session().events), "json"))
    sequences = [entry["sequence"] for entry in data["entries"]]
    assert sequences == sorted(sequences)
    assert {entry["kind"] for entry in data["entries"]} == {
        "turn_started",
        "turn_ended",
        "item",
        "permission",
        "question",
        "error",
        "session_ended",
    }


def test_transcript_shows_turn_durations_and_hitl_answers() -> None:
    md = render_transcript(replay(canonical_session().events), "markdown")
    assert "_Turn 1 ended: completed after 4.50 s (#20)_" in md
    assert "**Permission** `p1`: write hello.py (#12) -> **accept** (#13)" in md
    assert '-> **answered** "pytest" (#25)' in md
    assert '```diff\n-print("helo")\n+print("hello")\n```' in md


def test_diff_reports_what_happened_between_two_points() -> None:
    events = canonical_session().events
    changes = diff(replay(events[:11]), replay(events[:25]))
    assert changes.events == 14
    assert [i.item_id for i in changes.items_added] == ["c2r", "a1", "u2"]
    assert [p.permission_id for p in changes.permissions_resolved] == ["p1"]
    assert [t.turn_id for t in changes.turns_ended] == ["t1"]
    assert [t.turn_id for t in changes.turns_started] == ["t2"]
    assert [q.question_id for q in changes.questions_resolved] == ["q1"]
    text = format_diff(changes)
    assert "from sequence 11 to 25: +14 event(s)" in text
    assert "+ item a1 (message/assistant, completed) 'Fixed: the greeting now says hello.'" in text


def long_chat(turns: int, size: int) -> Stream:
    s = Stream().started()
    for n in range(turns):
        s.turn(f"t{n}").user(f"u{n}", f"question {n} " + "q" * size)
        s.assistant(f"a{n}", f"answer {n} " + "a" * size)
        s.turn_end(f"t{n}")
    return s


def test_restore_text_keeps_the_newest_and_says_how_much_was_left_out() -> None:
    state = replay(long_chat(40, 100).events)  # 80 entries
    text = restore_text(state, max_events=50, max_chars=12000)
    lines = text.split("\n")
    assert lines[0] == HEADER
    assert lines[1] == "[30 earlier entries left out]"
    assert lines[2].startswith("User: question 15 ")
    assert lines[-1].startswith("Assistant: answer 39 ")


def test_restore_text_drops_oldest_first_when_over_the_character_bound() -> None:
    state = replay(long_chat(10, 1000).events)
    text = restore_text(state, max_events=50, max_chars=3000)
    assert len(text) <= 3000
    assert text.split("\n")[1] == "[18 earlier entries left out]"
    assert text.endswith("answer 9 " + "a" * 1000)


def test_restore_text_cuts_the_start_of_a_newest_entry_too_long_to_fit() -> None:
    state = replay(long_chat(1, 5000).events)
    text = restore_text(state, max_chars=1000)
    assert len(text) == 1000
    assert text.split("\n")[2].startswith("Assistant: …")
    assert text.endswith("a" * 500)


def test_restore_text_of_a_session_without_history_is_empty() -> None:
    assert restore_text(replay(Stream().started().events)) == ""


def test_an_fs_change_is_one_line_with_its_path_size_and_digest() -> None:
    from datetime import UTC, datetime

    from sandbox_agent.events import EventDraft
    from sandbox_agent.replay.render import event_line

    draft = EventDraft(
        type="fs.changed",
        source="client",
        data={"operation": "write", "path": "/r/a.txt", "size": 4, "sha256": "ab" * 32},
    )
    time = datetime(2026, 12, 7, tzinfo=UTC)
    event = draft.to_event(session_id="s", sequence=3, event_id="evt_3", time=time)
    line = event_line(event)
    assert line.endswith("fs.changed [client] write /r/a.txt (4 bytes, sha256 abababababab)")
