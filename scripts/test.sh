#!/usr/bin/env bash
# The test suite (the default run skips the `slow` marker; pass -m slow for the long suites).
# Postgres tests use $SANDBOX_AGENT_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test)
# and skip when it is unreachable, except under CI ($CI true, 1 or yes) where that is a failure.
source "$(dirname "$0")/env.sh"
exec python -m pytest "$@"
