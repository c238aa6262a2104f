"""The debugging walkthrough of docs/replay.md runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).parent.parent / "docs" / "replay.md"


def walkthrough_script() -> str:
    section = DOC.read_text(encoding="utf-8").split("## Debugging walkthrough", 1)[1]
    section = section.split("\n## ", 1)[0]
    return "set -euo pipefail\n" + "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S))


def test_the_debugging_walkthrough_runs_as_written(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp_path),
        "SANDBOX_AGENT_DATA_DIR": str(tmp_path / "data"),
        "NO_COLOR": "1",
        "COLUMNS": "100",
    }
    done = subprocess.run(
        ["bash", "-c", walkthrough_script()],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in [
        "│ demo │ mock  │ ended  │     17 │",
        "Assistant (#9): The test expects 5; I will change add().",
        "running 8 ['u1', 'c1', 'r1']",
        "from sequence 8 to 15: +7 event(s)",
        "2 anomalies in session demo (17 events checked):",
        "  #13 delta_after_completion: delta for item 'a1' completed at sequence 12",
        "exit code 1",
        "forked demo-fix-the-test from {'session_id': 'demo', 'sequence': 8}",
        "no anomalies: session demo-fix-the-test, 12 events checked",
        "2 + 2 is 4: the test is wrong, not add(). I will fix the test.",
        "2 created, 29 event(s) written, 0 already present",
        "0 created, 0 event(s) written, 29 already present",
        "ended 3 ['delta_after_completion', 'turn_open_at_session_end']",
        "Assistant: The test expects 5; I will change add().",
    ]:
        assert expected in out, expected
