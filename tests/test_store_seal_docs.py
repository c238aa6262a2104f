"""The examples of docs/persistence.md, "Encryption and compression", run as written: the Python
one prints what its comments say, the shell one seals, rotates and exports through the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).parent.parent / "docs" / "persistence.md"


def section() -> str:
    text = DOC.read_text(encoding="utf-8").split("\n## Encryption and compression\n", 1)[1]
    return text.split("\n## ", 1)[0]


def block(language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", section(), re.S)
    return str(found)


def test_the_python_example_prints_what_its_comments_say(tmp_path: Path) -> None:
    script = block("python")
    expected = re.findall(r"print\(.*\)  # (.*)", script)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected


def test_the_shell_example_seals_rotates_and_exports(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp_path),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block("bash")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "1 created, 1 event(s) written" in done.stdout
    assert "rekeyed 1 session(s) to compress=zstd, key=k2 of ['k1', 'k2']" in done.stdout
    # The default export holds the ciphertext only; --decrypt writes the plaintext.
    assert f"{tmp_path}/sealed.jsonl:0" in done.stdout
    assert f"{tmp_path}/plain.jsonl:1" in done.stdout
