"""docs/testing.md's "Property-test your recovery" runs as written: its code blocks saved as the
files they name, then pytest on them, as a user of the installed kit would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).parent.parent / "docs" / "testing.md"


def section_files() -> dict[str, str]:
    """The section's python blocks, by the file each names in its first line (``# name.py``);
    blocks naming the same file follow one another in it."""
    section = DOC.read_text(encoding="utf-8").split("## Property-test your recovery", 1)[1]
    section = section.split("\n## ", 1)[0]
    files: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        name = re.match(r"# (\w+\.py)\n", block)
        assert name is not None, f"a block names no file: {block[:80]!r}"
        files[name[1]] = files.get(name[1], "") + block + "\n"
    return files


def test_the_recovery_section_runs_as_written(tmp_path: Path) -> None:
    files = section_files()
    assert sorted(files) == ["backend.py", "test_recovery.py"]
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_recovery.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"\b2 passed\b", done.stdout), done.stdout[-3000:]
