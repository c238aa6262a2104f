"""Shared test helpers: database URLs, child-process scripts for crash, concurrency and
subscription tests."""
