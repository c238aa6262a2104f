"""``benchmarks/agents.py --quick --agents claude`` runs end to end: the real ``claude`` CLI alone
and through a real server, against the fake LLM (it proves the benchmark works, not that the
overhead is small: no bound is checked). Run with
``.venv/bin/pytest -m agents tests/test_benchmarks_agents_smoke.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.agent_env import require_agent

pytestmark = pytest.mark.agents

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "agents.py"


def test_agents_benchmark_quick_run_reports_claude_figures() -> None:
    require_agent("claude")
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--agents", "claude", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    claude = report["agents"]["claude"]
    assert set(claude) == {"plain", "tool"}, claude
    for figures in claude.values():
        for name in ("baseline_p50_ms", "baseline_p90_ms", "ours_p50_ms", "ours_p90_ms"):
            assert figures[name] > 0, (name, figures)
        assert figures["ratio_p50"] > 0, figures
        # The difference is ours minus the baseline of the same run (it may be negative).
        assert figures["overhead_p50_ms"] == pytest.approx(
            figures["ours_p50_ms"] - figures["baseline_p50_ms"]
        )
        assert figures["server_cpu_ms_per_turn"] > 0, figures
        assert figures["turns"] == 2
    context = report["context"]
    assert context["cpus"] >= 1
    assert context["load_average_before"] >= 0
