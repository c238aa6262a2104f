"""The README's set-up and walkthrough work as written: the main job (``scripts/main.sh``) serves
the API over the SQLite store in the data dir, and the five curls of "The server in five curls",
run one after another against it (only the port changed), do what the README says."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox_agent.testing.consistency import check_store, check_stream
from sandbox_agent.testing.server import ServerProcess

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def walkthrough() -> list[str]:
    """The commands of the README's curl walkthrough, continuation lines joined."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The server in five curls") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the walkthrough's sh block"
    joined = block.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


class MainJob(ServerProcess):
    """``scripts/main.sh -p PORT``, as the README runs it: the default store, the default mock
    delay, no token (on loopback)."""

    def command(self) -> list[str]:
        return [str(ROOT / "scripts" / "main.sh"), "-p", str(self.port)]


@pytest.fixture
def main_job(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The main job on a free port, with its data dir (so its SQLite store) in tmp."""
    data = tmp_path / "data"
    # Empty means unset to the server: no token, the default store.
    env = {"SANDBOX_AGENT_DATA_DIR": str(data), "SANDBOX_AGENT_TOKEN": ""}
    env["SANDBOX_AGENT_STORE"] = ""
    store = f"sqlite:///{data / 'sandbox-agent.db'}"
    job = MainJob(store, tmp_path / "main.log", env=env)
    job.start(timeout=120)  # the first run of main.sh may create the venv
    try:
        yield job.port, data
    finally:
        job.stop()
        job.kill()
    check_store(store)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_the_readme_walkthrough_works_as_written(main_job: tuple[int, Path]) -> None:
    port, data_dir = main_job
    commands = walkthrough()
    assert len(commands) == 5
    outputs = []
    for command in commands:
        # --fail-with-body: an HTTP error fails the step (the README's -s alone would hide it).
        command = command.replace("localhost:2468", f"127.0.0.1:{port}")
        command = command.replace("curl -s", "curl --fail-with-body -s", 1)
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    created, streamed, sent, polled, transcript = outputs
    assert json.loads(created) == {"healthy": True, "nativeSessionId": "mock-demo"}
    frames = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in frames][-1] == "turn.ended"
    assert frames[0]["type"] == "turn.started" and frames[-1]["data"]["reason"] == "completed"
    assert sent == ""  # 204
    page = json.loads(polled)
    assert page["events"][0]["type"] == "session.started"
    assert "turn.started" in [e["type"] for e in page["events"][len(frames) + 1 :]]
    assert "OK" in transcript and "Reply with exactly the single word OK." in transcript
    # The main job's store is the SQLite file in the data dir, and the stream is clean.
    assert (data_dir / "sandbox-agent.db").is_file()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        check_stream(client.get("/v1/sessions/demo/events").json()["events"])
