"""``benchmarks/acp.py --quick`` runs end to end against a real server (it proves the benchmark
works, not that the server is fast: the goals are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "acp.py"


@pytest.mark.slow  # a server process and its workload: about 8 s
def test_acp_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--json", "--upstream", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    ours = report["figures"]["ours"]
    for name in ("round_trip_p50_ms", "fanout_p99_ms", "replay_messages_per_s"):
        assert ours[name] > 0, name
    assert report["goals"] == {}  # no upstream binary: no ratio
