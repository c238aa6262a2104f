"""The inspector: a web UI over any store (session list, transcript, time travel, diffs, the
replay check's anomalies, live follow and actions on a server, fork). The server mounts it at
``/ui/``; ``sandbox-agent inspect --store URL`` serves it over any store, read-only.

Imports ``events``, ``store``, ``replay`` and ``api`` only.
"""

from sandbox_agent.inspector.app import CSP, Inspector, Options, build_inspector
from sandbox_agent.inspector.markdown import render_markdown

__all__ = ["CSP", "Inspector", "Options", "build_inspector", "render_markdown"]
