"""What CI means to the tests (``sandbox_agent.testing.ci``): one rule for ``$CI``, and hypothesis
drawing new examples in each CI run with the seed printed, so that a failure can be replayed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_agent.testing import databases
from sandbox_agent.testing.ci import in_ci

DRAWS = """
import os

from hypothesis import given, settings, strategies as st


@settings(max_examples=20)
@given(st.integers())
def test_draws(n):
    with open(os.environ["DRAWN"], "a") as drawn:
        drawn.write(f"{n}\\n")
    assert os.environ.get("FAIL") != "1"
"""


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE", "Yes", " true "])
def test_ci_is_true_1_or_yes_in_any_case(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci()


@pytest.mark.parametrize("value", ["", "false", "0", "no", "on"])
def test_anything_else_is_not_ci(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    assert not in_ci()


@pytest.mark.parametrize("value", ["1", "yes"])
def test_an_unreachable_postgres_fails_under_every_spelling_of_ci(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", value)
    monkeypatch.setattr(databases, "postgres_problem", lambda: "PostgreSQL is unreachable")
    with pytest.raises(pytest.fail.Exception, match="under CI"):
        databases.require_postgres()


def _run(tmp_path: Path, drawn: Path, *args: str, fail: bool = False) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(CI="true", DRAWN=str(drawn), FAIL="1" if fail else "0")
    plugins = ["-p", "sandbox_agent.testing.ci", "-p", "no:cacheprovider"]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "test_draws.py", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == (1 if fail else 0), completed.stdout + completed.stderr
    return completed.stdout


def test_each_ci_run_draws_new_examples_and_a_failure_replays_from_its_printed_seed(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_draws.py").write_text(DRAWS)
    runs = [tmp_path / "first.txt", tmp_path / "second.txt"]
    for drawn in runs:
        assert "hypothesis seed" in _run(tmp_path, drawn)
    # hypothesis's own CI profile is derandomized: both runs would draw the same examples.
    assert runs[0].read_text() != runs[1].read_text()

    failed = tmp_path / "failed.txt"
    output = _run(tmp_path, failed, fail=True)
    # The summary of the failing run says how to replay it (and hypothesis prints the blob).
    seed = re.findall(r"hypothesis seed (\d+) \(reproduce: pytest --hypothesis-seed=\1", output)
    assert len(seed) == 2, output  # in the header and in the summary
    assert "@reproduce_failure" in output, output
    replayed = tmp_path / "replayed.txt"
    _run(tmp_path, replayed, f"--hypothesis-seed={seed[0]}", fail=True)
    assert replayed.read_text() == failed.read_text()
