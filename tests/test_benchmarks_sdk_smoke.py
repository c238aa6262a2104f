"""``benchmarks/sdk.py --quick`` runs end to end (it proves the benchmark works, not that the
SDK is fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "sdk.py"


def test_sdk_benchmark_quick_run_reports_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    for name in ("mirror_events_per_s", "prompt_p50_ms", "raw_http_p50_ms"):
        assert figures[name] > 0, name
    assert "prompt_over_raw_ms" in figures
