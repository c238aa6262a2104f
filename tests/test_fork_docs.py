"""docs/persistence.md's "Fork" example runs as written and prints what the doc says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).parent.parent / "docs" / "persistence.md"


def test_the_fork_example_prints_what_the_doc_says(tmp_path: Path) -> None:
    section = DOC.read_text(encoding="utf-8").split("\n## Fork\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    (printed,) = re.findall(r"```text\n(.*?)```", section, re.S)
    (tmp_path / "fork_example.py").write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "fork_example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == printed
