#!/usr/bin/env bash
# The main job: lists the sessions of the default store (SQLite in the data dir).
source "$(dirname "$0")/env.sh"
exec sandbox-agent sessions list "$@"
