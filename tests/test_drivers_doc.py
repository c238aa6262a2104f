"""docs/drivers.md runs as written: its dict driver passes the shipped kit (``StoreContract`` and
the state machine) in a pytest run of its own, its ``register_driver`` step makes ``dict://``
open, and its entry point makes the CLI open ``dict://`` in another process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent / "docs" / "drivers.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with the doc's files: dictstore.py and test_dictstore.py."""
    driver, _register, test = blocks("python")
    (tmp_path / "dictstore.py").write_text(driver, encoding="utf-8")
    (tmp_path / "test_dictstore.py").write_text(test, encoding="utf-8")
    return tmp_path


def env_with(path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    env.pop("PYTEST_ADDOPTS", None)
    return env


def test_the_dict_driver_of_the_doc_passes_the_kit(project: Path) -> None:
    assert "pytest test_dictstore.py" in blocks("sh")[0]
    pytest_command = [sys.executable, "-m", "pytest", "test_dictstore.py", "-q", "-rs"]
    done = subprocess.run(
        [*pytest_command, "-p", "no:cacheprovider"],
        cwd=project,
        env=env_with(project),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 80, summary  # the whole contract (about 85 tests) and the machine
    assert "failed" not in summary and "error" not in summary, summary
    # The groups that need a URL skip, saying why.
    assert "needs a store URL" in done.stdout, done.stdout[-3000:]


def test_registering_the_scheme_makes_open_store_open_it(project: Path) -> None:
    _driver, register, _test = blocks("python")
    script = (
        register
        + """
import asyncio

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, StoreConfigError, open_store, register_driver


async def main() -> None:
    async with await open_store("dict://") as store:
        await store.create_session(SessionRecord(id="s1", agent="mock"))
        await store.append("s1", [EventDraft(type="x.note", data={"n": 1})], expected_sequence=0)
        assert [e.data for e in await store.read("s1")] == [{"n": 1}]
    try:
        register_driver("dict", open_dict_store)
    except StoreConfigError as exc:
        print("twice:", exc)
    try:
        await open_store("nosuch://x")
    except StoreConfigError as exc:
        print("unknown:", exc)
    try:
        await open_store("dict://?color=red")
    except StoreConfigError as exc:
        print("rejected:", exc)


asyncio.run(main())
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env=env_with(project),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert "registered twice" in lines["twice"] and "dictstore.open_dict_store" in lines["twice"]
    assert all(scheme in lines["unknown"] for scheme in ("dict", "memory", "sqlite", "postgresql"))
    assert "dict:// takes no options" in lines["rejected"]


def test_the_entry_point_makes_the_cli_open_the_scheme(project: Path) -> None:
    """The doc's pyproject entry point, installed as an installer would (a dist-info folder
    with entry_points.txt on the path), gives the scheme to the CLI of another process."""
    toml = blocks("toml")[0]
    group = re.search(r'\[project\.entry-points\."([^"]+)"\]', toml).group(1)  # type: ignore[union-attr]
    name, value = (part.strip().strip('"') for part in toml.splitlines()[1].split("="))
    dist = project / "dictstore-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dictstore\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")
    command = [sys.executable, "-m", "sandbox_agent", "sessions", "list", "--json", "--store"]
    listed = subprocess.run(
        [*command, "dict://"],
        env=env_with(project),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    refused = subprocess.run(
        [*command, "dict://?color=red"],
        env=env_with(project),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "dict:// takes no options" in refused.stderr
    assert "Traceback" not in refused.stderr
