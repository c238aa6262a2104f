"""Upcasting (events/versions.py): events stored at an old schema version read in the current
shape, on every driver, lazily (the stored rows stay as written), from the recorded fixture
``tests/fixtures/upcasting/notes-v1.jsonl`` too, with the replay check clean on them."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_agent.events import EventDraft, new_event_id, utc_now
from sandbox_agent.events.versions import UpcastError, Upcasters, register_upcaster
from sandbox_agent.replay import check_session
from sandbox_agent.replay.errors import TransferError
from sandbox_agent.replay.transfer import export_sessions, import_sessions
from sandbox_agent.store import (
    EventStore,
    SchemaVersionError,
    SessionChange,
    SessionRecord,
    open_store,
)
from sandbox_agent.store.driver import EventRow
from sandbox_agent.testing.databases import driver_params

FIXTURE = Path(__file__).parent / "fixtures" / "upcasting" / "notes-v1.jsonl"

all_drivers = pytest.mark.parametrize("driver", driver_params(), indirect=True)


def note_registry() -> Upcasters:
    """``app.note`` as the fixture's backend evolved it: v1 ``{text, by}``, v2 ``{body, format,
    by}``, v3 (current) ``{body, format, author: {name}}``."""
    registry = Upcasters()

    @register_upcaster("app.note", 1, registry)
    def to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {"body": data["text"], "format": "plain", "by": data["by"]}

    @register_upcaster("app.note", 2, registry)
    def to_v3(data: dict[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in data.items() if k != "by"}
        return {**rest, "author": {"name": data["by"]}}

    return registry


def v3(text: str, by: str = "ops") -> dict[str, Any]:
    return {"body": text, "format": "plain", "author": {"name": by}}


# -- the registry ---------------------------------------------------------------------------


def test_a_chain_runs_from_the_stored_version_to_the_current_one() -> None:
    registry = note_registry()
    assert registry.current("app.note") == 3
    assert registry.current("item.delta") == 1  # no upcasters: the first version
    assert registry.upcast("app.note", 1, {"text": "hi", "by": "ops"}) == v3("hi")
    assert registry.upcast("app.note", 2, {"body": "hi", "format": "md", "by": "x"}) == {
        "body": "hi",
        "format": "md",
        "author": {"name": "x"},
    }
    current = v3("as is")
    assert registry.upcast("app.note", 3, current) is current
    # Written by a newer release: served as stored, never guessed at.
    assert registry.upcast("app.note", 7, {"future": True}) == {"future": True}


def test_a_missing_step_a_failing_upcaster_and_a_second_registration_are_clear_errors() -> None:
    registry = Upcasters()
    registry.register("app.gap", 2, lambda data: data)  # 2 -> 3; nothing from 1
    with pytest.raises(UpcastError, match=r"'app.gap' at schema version 1: no upcaster to "):
        registry.upcast("app.gap", 1, {})
    registry.register("app.bad", 1, lambda data: data["missing"])
    with pytest.raises(UpcastError, match=r"'app.bad' at schema version 1: the upcaster .*fail"):
        registry.upcast("app.bad", 1, {})
    registry.register("app.list", 1, lambda data: [data])  # type: ignore[arg-type, return-value]
    with pytest.raises(UpcastError, match="returned list, not an object"):
        registry.upcast("app.list", 1, {})
    with pytest.raises(ValueError, match="registered already"):
        registry.register("app.gap", 2, lambda data: data)
    with pytest.raises(ValueError, match="start at 1"):
        registry.register("app.zero", 0, lambda data: data)


# -- stored old rows, every driver ----------------------------------------------------------


@pytest.fixture
async def notes_store(store_url: str) -> AsyncIterator[EventStore]:
    async with await open_store(store_url) as store:
        store.upcasters = note_registry()
        yield store


async def _store_rows(store: EventStore, session_id: str, rows: list[EventRow]) -> None:
    """Rows as an older release wrote them: through the driver, at their own versions."""
    last = await store.last_sequence(session_id)
    await store.driver.insert_events(
        session_id, rows, last, SessionChange(count=len(rows), updated_at=utc_now())
    )


def _row(type_: str, data: dict[str, Any], version: int) -> EventRow:
    return EventRow(
        new_event_id(), utc_now(), type_, "client", False, None, json.dumps(data), None, version
    )


@all_drivers
async def test_old_rows_read_in_the_current_shape_and_stay_as_stored(
    notes_store: EventStore,
) -> None:
    store = notes_store
    await store.create_session(SessionRecord(id="s", agent="mock"))
    await _store_rows(
        store,
        "s",
        [
            _row("app.note", {"text": "first", "by": "ops"}, 1),
            _row("item.delta", {"item_id": "i", "delta": "x"}, 1),
            _row("app.note", {"body": "second", "format": "md", "by": "dev"}, 2),
        ],
    )
    # New events are written at the current version.
    await store.append("s", [EventDraft(type="app.note", source="client", data=v3("third"))])

    expected = [
        v3("first"),
        {"item_id": "i", "delta": "x"},
        {"body": "second", "format": "md", "author": {"name": "dev"}},
        v3("third"),
    ]
    assert [e.data for e in await store.read("s")] == expected
    assert [p.event.data for p in await store.read_all()] == expected
    batches = store.subscribe_batches("s", 0)
    assert [e.data for e in await anext(batches)] == expected
    await batches.aclose()
    assert await store.verify("s") == []

    # Lazily: the stored rows keep their versions and shapes.
    rows = await store.driver.select_events("s", 0, None)
    assert [int(row[9]) for row in rows] == [1, 1, 2, 3]
    assert json.loads(rows[0][7]) == {"text": "first", "by": "ops"}


@all_drivers
async def test_a_row_without_its_upcaster_is_a_schema_version_error_not_a_shorter_stream(
    store_url: str,
) -> None:
    async with await open_store(store_url) as store:
        store.upcasters = Upcasters()
        store.upcasters.register("app.note", 2, lambda data: data)  # 1 -> 2 missing
        await store.create_session(SessionRecord(id="s", agent="mock"))
        await _store_rows(store, "s", [_row("app.note", {"text": "old", "by": "x"}, 1)])
        with pytest.raises(SchemaVersionError, match=r"'s'.*'app.note' at schema version 1"):
            await store.read("s")
        with pytest.raises(SchemaVersionError, match=r"'app.note' at schema version 1"):
            await store.read_all()
        (finding,) = await store.verify("s")
        assert finding.kind == "undecodable" and "no upcaster to version 2" in finding.detail


async def test_a_retried_append_is_recognised_against_old_rows() -> None:
    """The idempotent retry compares a draft with what is stored, upcast."""
    async with await open_store("memory://") as store:
        store.upcasters = note_registry()
        await store.create_session(SessionRecord(id="s", agent="mock"))
        old = _row("app.note", {"text": "hi", "by": "ops"}, 1)
        await _store_rows(store, "s", [old])
        retry = EventDraft(event_id=old.event_id, type="app.note", source="client", data=v3("hi"))
        retry = retry.model_copy(update={"time": old.time})
        (stored,) = await store.append("s", [retry])
        assert (stored.sequence, stored.data) == (1, v3("hi"))
        assert await store.last_sequence("s") == 1


@settings(max_examples=60, deadline=None)
@given(
    versions=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=12),
    texts=st.lists(st.text(max_size=20), min_size=12, max_size=12),
    page=st.integers(min_value=1, max_value=5),
)
async def test_any_mix_of_versions_reads_as_each_event_upcast_alone(
    versions: list[int], texts: list[str], page: int
) -> None:
    """For any stream of ``app.note`` rows at versions 1..3, read in pages of any size, each
    event's data is its own upcast, in order, and the rows are left as stored."""
    registry = note_registry()
    shapes = {
        1: lambda t: {"text": t, "by": "ops"},
        2: lambda t: {"body": t, "format": "plain", "by": "ops"},
        3: lambda t: v3(t),
    }
    stored = [shapes[v](t) for v, t in zip(versions, texts, strict=False)]
    async with await open_store("memory://") as store:
        store.upcasters = registry
        await store.create_session(SessionRecord(id="s", agent="mock"))
        await _store_rows(
            store,
            "s",
            [_row("app.note", d, v) for d, v in zip(stored, versions, strict=False)],
        )
        read: list[dict[str, Any]] = []
        while batch := await store.read("s", after=len(read), limit=page):
            read.extend(e.data for e in batch)
        assert read == [v3(t) for t in texts[: len(versions)]]
        rows = await store.driver.select_events("s", 0, None)
        assert [json.loads(r[7]) for r in rows] == stored


# -- the recorded fixture -------------------------------------------------------------------


@pytest.mark.parametrize("driver", driver_params(("sqlite", "postgres")), indirect=True)
async def test_the_recorded_v1_stream_imports_as_current_and_checks_clean(
    notes_store: EventStore,
) -> None:
    store = notes_store
    summary = await import_sessions(store, FIXTURE.read_text(encoding="utf-8").splitlines())
    assert summary.created == ["notes-v1"] and summary.events_written == 17
    events = await store.read("notes-v1")
    notes = [e.data for e in events if e.type == "app.note"]
    assert notes == [v3("Looks right."), v3("Second turn ran the tool.")]
    assert {e.type for e in events} >= {"session.started", "turn.ended", "item.delta"}
    state = await check_session(store, "notes-v1")
    assert state.anomalies == [] and state.last_sequence == 17

    # Exported again: current shapes, each note line naming version 3; it imports as it is.
    out = io.StringIO()
    await export_sessions(store, ["notes-v1"], out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    note_lines = [line for line in lines if line.get("event", {}).get("type") == "app.note"]
    assert [line["schema_version"] for line in note_lines] == [3, 3]
    assert all("schema_version" not in line for line in lines if line not in note_lines)
    again = await import_sessions(store, out.getvalue().splitlines())
    assert (again.events_written, again.events_skipped) == (0, 17)


async def test_a_fixture_line_at_an_unknown_step_names_the_line_and_the_version() -> None:
    async with await open_store("memory://") as store:
        store.upcasters = Upcasters()
        store.upcasters.register("app.note", 2, lambda data: data)
        with pytest.raises(TransferError, match=r"line 17: .*'app.note' at schema version 1"):
            await import_sessions(store, FIXTURE.read_text(encoding="utf-8").splitlines())


# -- docs/persistence.md ----------------------------------------------------------------------


def upcasting_docs(language: str) -> str:
    """The one ``language`` example of docs/persistence.md's "Schema versions and upcasting"."""
    import re

    doc = (Path(__file__).parent.parent / "docs" / "persistence.md").read_text(encoding="utf-8")
    section = doc.split("### Schema versions and upcasting", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(rf"```{language}\n(.*?)```", section, re.S)
    return str(code)


def test_the_upcasting_example_of_the_docs_runs_as_written(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = upcasting_docs("python")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["2", "[{'body': 'hi', 'format': 'md'}]"]


def test_the_db_upcast_example_of_the_docs_prints_what_it_says(tmp_path: Path) -> None:
    """The shell example under the Python one, run as written in the directory the Python
    example ran in, once two notes of an older release (version 1) were stored beside its own,
    with ``myapp.upcasters`` holding the docs' upcaster."""
    import asyncio
    import os
    import shlex
    import subprocess
    import sys

    code = upcasting_docs("python")
    command, comment = upcasting_docs("bash").strip().splitlines()
    assert comment.startswith("# ")
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr

    async def older_notes() -> None:
        async with await open_store(f"sqlite:///{tmp_path / 'notes.db'}") as store:
            await _store_rows(
                store,
                "n1",
                [_row("app.note", {"text": text}, 1) for text in ("one", "two")],
            )

    asyncio.run(older_notes())
    # The docs' upcaster, as the module the command imports.
    upcaster = code[code.index("# Version 1") : code.index("async def main")]
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    imports = "from sandbox_agent.events.versions import register_upcaster\n\n"
    (tmp_path / "myapp" / "upcasters.py").write_text(imports + upcaster)
    program, *arguments = shlex.split(command)
    assert program == "sandbox-agent"
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_agent", *arguments],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == comment[2:]


# -- db upcast --------------------------------------------------------------------------------

UPCASTERS_MODULE = """
from sandbox_agent.events.versions import register_upcaster


@register_upcaster("app.note", 1)
def to_v2(data):
    return {"body": data["text"], "format": "plain", "by": data["by"]}


@register_upcaster("app.note", 2)
def to_v3(data):
    rest = {k: v for k, v in data.items() if k != "by"}
    return {**rest, "author": {"name": data["by"]}}
"""


def test_db_upcast_rewrites_old_rows_once_with_the_users_upcasters(tmp_path: Path) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'notes.db'}"

    async def old_store() -> None:
        async with await open_store(url) as store:
            await store.create_session(SessionRecord(id="s", agent="mock"))
            await _store_rows(
                store,
                "s",
                [
                    _row("app.note", {"text": "a", "by": "ops"}, 1),
                    _row("item.delta", {"item_id": "i", "delta": "x"}, 1),
                    _row("app.note", {"body": "b", "format": "md", "by": "dev"}, 2),
                ],
            )

    asyncio.run(old_store())
    (tmp_path / "notes_upcasters.py").write_text(UPCASTERS_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}

    def upcast(*extra: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox_agent", "db", "upcast", "--store", url, *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    first = upcast("--import", "notes_upcasters", "--json")
    assert first == {
        "sessions": 1,
        "events_rewritten": 2,
        "events_current": 1,
        "by_type": {"app.note": 2},
    }
    assert upcast("--import", "notes_upcasters", "--json")["events_rewritten"] == 0

    async def stored() -> list[tuple[int, Any]]:
        async with await open_store(url) as store:
            store.upcasters = Upcasters()  # no upcasters needed any more
            rows = await store.driver.select_events("s", 0, None)
            assert [e.data["body"] for e in await store.read("s") if e.type == "app.note"] == [
                "a",
                "b",
            ]
            return [(int(r[9]), json.loads(r[7])) for r in rows]

    assert asyncio.run(stored()) == [
        (3, v3("a")),
        (1, {"item_id": "i", "delta": "x"}),
        (3, {"body": "b", "format": "md", "author": {"name": "dev"}}),
    ]
    # Without the module: the default registry knows no upcasters, so nothing is stale.
    assert upcast("--json")["events_rewritten"] == 0
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox_agent",
            "db",
            "upcast",
            "--store",
            url,
            "--import",
            "nope_x",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "cannot import 'nope_x'" in bad.stderr


@all_drivers
async def test_upcast_store_keeps_payloads_sealed_as_the_store_seals(store_url: str) -> None:
    from sandbox_agent.store.upcast import upcast_store

    keys = Path(__file__).parent / "fixtures" / "seal" / "test.keys"
    sep = "&" if "?" in store_url else "?"
    async with await open_store(f"{store_url}{sep}compress=zstd&keys=file:{keys}") as store:
        store.upcasters = note_registry()
        await store.create_session(SessionRecord(id="s", agent="mock"))
        # An old note written sealed: its data through the store's sealing, at version 1.
        old = _row("app.note", {"text": "secret", "by": "ops"}, 1)
        old = old._replace(
            data=store._payload("s", old.event_id, "data", {"text": "secret", "by": "ops"})
        )
        await _store_rows(store, "s", [old])
        summary = await upcast_store(store)
        assert (summary.events_rewritten, summary.by_type) == (1, {"app.note": 1})
        (row,) = await store.driver.select_events("s", 0, None)
        assert int(row[9]) == 3 and str(row[7]).startswith('{"$sealed":')
        assert "secret" not in str(row[7])
        store.upcasters = Upcasters()
        assert [e.data for e in await store.read("s")] == [v3("secret")]
