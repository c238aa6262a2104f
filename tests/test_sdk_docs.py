"""The FastAPI quickstart of docs/sdk.md runs as written (on a free port instead of 8000)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from sandbox_agent.testing.server import free_port

DOC = Path(__file__).parent.parent / "docs" / "sdk.md"


def quickstart() -> tuple[str, str]:
    """The quickstart's app.py and its shell steps."""
    section = DOC.read_text(encoding="utf-8").split("## Quickstart: a FastAPI backend", 1)[1]
    section = section.split("\n## ", 1)[0]
    app = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    steps = "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S))
    return app, steps


def _documents(text: str) -> list[dict[str, Any]]:
    """The JSON documents curl printed one after another (without newlines)."""
    decoder, at = json.JSONDecoder(), 0
    found: list[dict[str, Any]] = []
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
    return found


def test_the_fastapi_quickstart_and_its_recovery_run_as_written(tmp_path: Path) -> None:
    app, steps = quickstart()
    (tmp_path / "app.py").write_text(app, encoding="utf-8")
    script = "set -euo pipefail\n" + steps.replace("8000", str(free_port()))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp_path),
    }
    env.pop("SANDBOX_AGENT_URL", None)
    env.pop("BACKEND_STORE", None)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    log = (tmp_path / "backend.log").read_text(errors="replace")
    assert done.returncode == 0, done.stderr + log
    first, history, answer = _documents(done.stdout)
    assert first == {"text": "remember the blue whale", "end": "completed"}
    assert history["turns"] == 1
    assert {"role": "assistant", "text": "remember the blue whale"} in history["messages"]
    assert answer["end"] == "completed"
    assert answer["text"].startswith("Previous conversation of this session, replayed")
    assert "User: echo remember the blue whale" in answer["text"]
    assert answer["text"].endswith("what did I ask you to remember?")
    assert not list(tmp_path.glob("sandbox-agent-*")), "an embedded server was left behind"


def test_the_files_example_runs_as_written(tmp_path: Path) -> None:
    """docs/sdk.md, "Files": the example against a real server rooted in a fresh directory (its
    local files made first; only the address changed)."""
    import asyncio
    import io
    import tarfile
    from pathlib import Path as LocalPath

    from sandbox_agent import SandboxAgent
    from sandbox_agent.testing.server import ServerProcess

    section = DOC.read_text(encoding="utf-8").split("## Files", 1)[1].split("\n## ", 1)[0]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    (tmp_path / "big.bin").write_bytes(os.urandom(3 << 20))
    with tarfile.open(tmp_path / "site.tar.gz", "w:gz") as archive:
        page = tarfile.TarInfo("index.html")
        page.size = 5
        archive.addfile(page, io.BytesIO(b"hello"))
    server = ServerProcess(
        f"sqlite:///{tmp_path / 's.db'}",
        tmp_path / "log",
        args=["--no-token", "--root", str(tmp_path)],
    ).start()
    here = os.getcwd()
    try:
        os.chdir(tmp_path)  # the example's local files are relative
        body = example.replace("http://127.0.0.1:2468", server.url)
        code = "async def example():\n" + "".join(f"    {line}\n" for line in body.splitlines())
        scope: dict[str, Any] = {"SandboxAgent": SandboxAgent, "Path": LocalPath}
        exec(compile(code, "docs/sdk.md", "exec"), scope)
        asyncio.run(scope["example"]())
    finally:
        os.chdir(here)
        server.stop()
    assert (tmp_path / "copy.bin").read_bytes() == (tmp_path / "big.bin").read_bytes()
    assert (tmp_path / "data" / "big.bin").read_bytes() == (tmp_path / "big.bin").read_bytes()
    assert (tmp_path / "site" / "index.html").read_bytes() == b"hello"
    assert (tmp_path / "notes" / "todo.md").read_text() == "- ship it\n"
