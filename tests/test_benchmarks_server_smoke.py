"""``benchmarks/server.py --quick`` runs end to end against a real server (it proves the benchmark
works, not that the server is fast: the goals are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "server.py"


def test_server_benchmark_quick_run_reports_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    figures = report["figures"]
    for name in (
        "round_trip_p50_ms",
        "round_trip_p99_ms",
        "sse_events_per_s",
        "fanout_p50_ms",
        "fanout_p99_ms",
        "idle_rss_mb",
        "loaded_rss_mb",
    ):
        assert name in figures, name
    assert all(value > 0 for value in figures.values()), figures
    assert set(report["goals"]) <= set(figures)
    assert all(isinstance(goal["met"], bool) for goal in report["goals"].values())
