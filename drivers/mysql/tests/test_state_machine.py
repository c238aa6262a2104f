"""MySQL/MariaDB behaves like the plain model of a store (``sandbox_agent.testing.machine``):
every example on a fresh database, opened through ``open_store``, closed and reopened between
steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from mysql_helpers import drop_database_of, new_database_url, require_mysql

from sandbox_agent.testing.machine import run_store_machine, url_store_machine


def fresh_url(_tmp: Path) -> str:
    return new_database_url()


def test_mysql_store_behaves_like_the_model() -> None:
    require_mysql()
    machine = url_store_machine(fresh_url, drop=drop_database_of, name="StoreMachine_mysql")
    run_store_machine(machine, examples=10, steps=30)  # 160 x 60 in the slow suite


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_mysql_store_behaves_like_the_model_for_longer() -> None:
    require_mysql()
    machine = url_store_machine(fresh_url, drop=drop_database_of, name="StoreMachine_mysql")
    run_store_machine(machine, examples=160, steps=60)
