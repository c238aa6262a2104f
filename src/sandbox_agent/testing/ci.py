"""What CI means to the tests: ``in_ci()``, and a pytest plugin for hypothesis under CI.

``in_ci()`` is the one rule: ``$CI`` is ``true``, ``1`` or ``yes``, in any case. Under it a test
that would skip for a missing service (Postgres, an agent CLI) fails instead.

As a pytest plugin (``-p sandbox_agent.testing.ci``, as in this project's ``pyproject.toml``; not
loaded by the kit's auto-loaded ``plugin``, so a user's own hypothesis profiles stay theirs):

- registers hypothesis's ``ci`` profile anew: hypothesis's own derandomizes, so every CI run
  would replay the same examples. Ours draws new ones each run, keeps no example database, sets
  no deadline and prints each failure's ``@reproduce_failure`` blob (``print_blob``);
- under ``in_ci()``, loads it and, unless ``--hypothesis-seed`` was given, draws the run's seed
  and passes it as ``--hypothesis-seed``. The header of the run prints it, and so does the summary
  of a failing run: ``pytest --hypothesis-seed=N <test id>`` draws that test's examples again.
"""

from __future__ import annotations

import os
import secrets

import pytest

CI_VALUES = ("true", "1", "yes")

_SEED = pytest.StashKey[str]()


def in_ci() -> bool:
    """Whether this is a CI run: ``$CI`` is true, 1 or yes (any case)."""
    return os.environ.get("CI", "").strip().lower() in CI_VALUES


def register_hypothesis_profiles() -> None:
    """Register the ``ci`` profile (see the module's docstring) over hypothesis's own."""
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci",
        derandomize=False,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


def reproduce_hint(seed: str) -> str:
    return f"hypothesis seed {seed} (reproduce: pytest --hypothesis-seed={seed} <test id>)"


@pytest.hookimpl(tryfirst=True)  # before hypothesis's own, which reads --hypothesis-seed
def pytest_configure(config: pytest.Config) -> None:
    register_hypothesis_profiles()
    if not in_ci():
        return
    from hypothesis import settings

    if not config.getoption("hypothesis_profile", None):
        settings.load_profile("ci")
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(secrets.randbits(64))
    config.stash[_SEED] = str(config.getoption("hypothesis_seed"))


def pytest_report_header(config: pytest.Config) -> str | None:
    seed = config.stash.get(_SEED, None)
    return None if seed is None else reproduce_hint(seed)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    seed = config.stash.get(_SEED, None)
    if seed is not None and exitstatus == pytest.ExitCode.TESTS_FAILED:
        terminalreporter.write_line(reproduce_hint(seed))
