"""Sandbox Agent: run coding agents in a sandbox, with every session kept as an event stream."""

__version__ = "0.1.0"
