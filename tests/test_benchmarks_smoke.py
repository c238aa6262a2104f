"""The store benchmark runs end to end and reports every row of the Speed table.

This proves the benchmark works, not that the store is fast: ``--quick`` counts are far too small
to measure anything. The Postgres rows are required when Postgres is reachable (and under
CI (``in_ci()``: ``$CI`` true, 1 or yes), where an unreachable Postgres fails the test), the
MySQL rows likewise under CI; the ``state_at`` row when the replay engine is present.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_agent.testing.ci import in_ci
from sandbox_agent.testing.databases import pg_base_url, postgres_problem, require_postgres

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "store.py"
ROWS = (
    "sqlite_batched_append",
    "sqlite_single_append",
    "sqlite_read",
    "sqlite_read_paged",
    "postgres_batched_append",
    "postgres_single_append",
    "mysql_batched_append",
    "mysql_single_append",
    "mysql_read",
    "state_at_latest",
)
# The benchmark skips these, saying why, without a MySQL server or the drivers/mysql package;
# under CI (which starts MariaDB and installs the package) they are required.
MYSQL_ROWS = {"mysql_batched_append", "mysql_single_append", "mysql_read"}


def test_store_benchmark_reports_a_positive_rate_for_every_row() -> None:
    if postgres_problem() is not None and in_ci():
        require_postgres()  # fails the test: under CI the Postgres rows are required
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--json", "--pg-url", pg_base_url()],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    rows = {row["key"]: row for row in report["rows"]}
    assert sorted(rows) == sorted(ROWS)

    skipped = set()
    if postgres_problem() is not None:
        skipped |= {"postgres_batched_append", "postgres_single_append"}
    if not replay_engine_present():
        skipped.add("state_at_latest")
    if not in_ci() and rows["mysql_read"]["skipped"]:
        skipped |= MYSQL_ROWS
    for key, row in rows.items():
        if key in skipped:
            assert row["skipped"], key
            continue
        assert row["skipped"] is None, (key, row["skipped"])
        assert row["store_per_s"] > 0, key
        assert row["baseline_per_s"] > 0, key
        assert row["ratio"] > 0, key
        repeats = report["repeats"] if "append" in key else report["read_repeats"]
        assert len(row["paired_ratios"]) == repeats, key
    # Sealed payloads: compression, encryption and both against the plain store, same run.
    sealed = report["sealed"]
    drivers = {"sqlite"} | ({"postgres"} if postgres_problem() is None else set())
    assert {(r["driver"], r["mode"]) for r in sealed["rows"]} == {
        (d, m) for d in drivers for m in ("compress", "encrypt", "both")
    }
    assert all(r["ratio"] > 0 for r in sealed["rows"])
    assert 0 < sealed["disk"]["compress"]["file_ratio"] < 1


def replay_engine_present() -> bool:
    if importlib.util.find_spec("sandbox_agent.replay") is None:
        return False
    return hasattr(importlib.import_module("sandbox_agent.replay"), "state_at")


def test_decode_benchmark_reports_each_way_with_its_ratio() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARK.with_name("decode.py")), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("2,000 rows")
    decodes = [line for line in lines if line.startswith("decode")]
    assert len(decodes) == 3
    assert all("us/row" in line and "read ratio it allows" in line for line in decodes)


@pytest.mark.slow
def test_the_consumers_section_reports_every_driver_and_batch() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--consumers", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    drivers = {row["driver"] for row in report["rows"]}
    assert {"memory", "sqlite"} <= drivers
    if postgres_problem() is None:
        assert "postgres" in drivers
    for row in report["rows"]:
        assert row["read_all"] > 0 and row["checkpoint_only"] > 0 and row["projection"] > 0
        assert row["checkpoint_only_ratio"] > 0 and row["projection_ratio"] > 0
