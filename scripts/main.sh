#!/usr/bin/env bash
# The main job: the HTTP server on 127.0.0.1:2468 over the default store (SQLite in the data
# dir), with the mock agent ready. Extra arguments go to `sandbox-agent server`.
source "$(dirname "$0")/env.sh"
exec sandbox-agent server "$@"
