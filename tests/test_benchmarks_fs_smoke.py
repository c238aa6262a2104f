"""``benchmarks/fs.py --quick`` runs end to end against a real server (it proves the benchmark
works, not that the server is fast: the goals are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "fs.py"


@pytest.mark.slow  # a server, cp and 16 MiB each way: about 6 s
def test_fs_benchmark_quick_run_reports_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    figures = report["figures"]
    for name in (
        "cp_mb_s",
        "cp_sync_mb_s",
        "write_mb_s",
        "read_mb_s",
        "idle_rss_mb",
        "write_rss_over_idle_mb",
        "read_rss_over_idle_mb",
        "write_ratio",
        "read_ratio",
    ):
        assert figures[name] > 0 or name.endswith("over_idle_mb"), name
    assert set(report["goals"]) <= set(figures)
    assert all(isinstance(goal["met"], bool) for goal in report["goals"].values())
