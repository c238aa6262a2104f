"""docs/persistence.md's consumer examples run as written ("Consumers and projections",
"Publishing to NATS JetStream"), printing what their comments say. The NATS one needs the NATS
of the machine (skipped without it, failed under CI)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from test_consumers_nats import NATS_URL, require_nats

DOC = Path(__file__).resolve().parents[1] / "docs" / "persistence.md"
SRC = Path(__file__).resolve().parents[1] / "src"


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def examples(title: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", section(title), re.S)


def printed(code: str) -> list[str]:
    """What the example says it prints: the comment on a ``print`` line, or the comment line
    right under a ``print`` line that has none."""
    expected: list[str] = []
    lines = code.splitlines()
    for n, line in enumerate(lines):
        if "print(" not in line:
            continue
        if "  # " in line:
            expected.append(line.split("  # ", 1)[1])
        elif n + 1 < len(lines) and lines[n + 1].strip().startswith("# "):
            expected.append(lines[n + 1].strip()[2:])
    return expected


def run(code: str, tmp_path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_the_consumer_examples_print_what_they_say(tmp_path: Path) -> None:
    codes = examples("Consumers and projections")
    assert len(codes) == 2
    for code in codes:
        assert printed(code)
        assert run(code, tmp_path) == printed(code)


async def _delete_stream(name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    except NotFoundError:
        pass
    finally:
        await nc.close()


def test_the_jetstream_example_prints_what_it_says(tmp_path: Path) -> None:
    require_nats()
    [code] = examples("Publishing to NATS JetStream")
    assert 'servers="nats://127.0.0.1:4222"' in code
    code = code.replace("nats://127.0.0.1:4222", NATS_URL)
    asyncio.run(_delete_stream("SANDBOX_DOCS"))
    try:
        assert run(code, tmp_path) == printed(code)
    finally:
        asyncio.run(_delete_stream("SANDBOX_DOCS"))


def test_the_consumers_command_lines_do_what_they_say(tmp_path: Path) -> None:
    """The three command lines of the section, run as written but for the store's URL (the
    docs' path and ``URL``), on a store whose ``type-counts`` consumer is at position 3 with
    one event after it, as in the first example."""
    import json
    import shlex

    from sandbox_agent.consumers import Consumer
    from sandbox_agent.events import EventDraft
    from sandbox_agent.store import SessionRecord, open_store

    url = f"sqlite:///{tmp_path / 'events.db'}"

    async def handler(batch: object, txn: object) -> None:
        return None

    async def store_with_a_consumer() -> None:
        async with await open_store(url) as store:
            await store.create_session(SessionRecord(id="s1", agent="mock"))
            delta = EventDraft(type="item.delta", data={"item_id": "m1", "delta": "hi"})
            await store.append("s1", [delta] * 3)
            assert await Consumer(store, "type-counts", handler).run_until_caught_up() == 3
            await store.append("s1", [EventDraft(type="turn.ended", data={})])

    asyncio.run(store_with_a_consumer())
    [block] = re.findall(r"```sh\n(.*?)```", section("Consumers and projections"), re.S)
    lines = block.strip().splitlines()
    assert len(lines) == 3

    def cli(line: str, *extra: str) -> str:
        program, *arguments = shlex.split(line, comments=True)
        assert program == "sandbox-agent"
        arguments = [
            url if a in ("sqlite:////var/lib/agents/events.db", "URL") else a for a in arguments
        ]
        done = subprocess.run(
            [sys.executable, "-m", "sandbox_agent", *arguments, *extra],
            env={**os.environ, "PYTHONPATH": str(SRC)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def listed(line: str) -> list[tuple[str, int, int]]:
        return [(c["name"], c["position"], c["lag"]) for c in json.loads(cli(line, "--json"))]

    table = cli(lines[0])  # a table
    assert "1 consumer(s)" in table
    [row] = [line for line in table.splitlines() if "type-counts" in line]
    assert [cell.strip() for cell in row.split("│")[1:4]] == ["type-counts", "3", "1"]
    assert listed(lines[0]) == [("type-counts", 3, 1)]  # --json
    assert listed(lines[1]) == [("type-counts", 0, 4)]  # apply all again
    assert listed(lines[2]) == []
    assert "0 consumer(s)" in cli(lines[0])
