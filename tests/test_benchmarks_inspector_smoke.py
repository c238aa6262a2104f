"""``benchmarks/inspector.py --quick`` runs end to end in the browser and reports every figure
(a smoke run: 5,000 events measure nothing; the figures are in docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.inspector import need_chromium

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "inspector.py"


@pytest.mark.slow
def test_the_inspector_benchmark_reports_every_figure() -> None:
    need_chromium()
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    for key in (
        "first_paint_ms",
        "slide_to_snapshot_ms",
        "slide_between_snapshots_ms",
        "state_json_at_snapshot_ms",
        "state_json_between_snapshots_ms",
    ):
        assert 0 < report[key]["best"] <= report[key]["median"] <= report[key]["worst"], key
    assert report["ratio_slide_to_snapshot_vs_state_json"] > 0
    assert report["events"] == 5000
