"""The Python SDK (``spec/sdk.md``): ``SandboxAgent`` (async) and ``SandboxAgentSync``.

Example::

    async with await SandboxAgent.connect("http://127.0.0.1:2468", store="sqlite:///app.db") as sdk:
        session = await sdk.create_session(agent="mock")
        result = await session.prompt("Reply with exactly the single word OK.")
        print(result.text)

``ApiClient`` is the plain HTTP client underneath (one method per endpoint, no local store).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox_agent.sdk.client import SandboxAgent
    from sandbox_agent.sdk.errors import MirrorConflict, SandboxAgentError
    from sandbox_agent.sdk.http import ApiClient
    from sandbox_agent.sdk.session import Session, TurnResult
    from sandbox_agent.sdk.sync import SandboxAgentSync, SessionSync

__all__ = [
    "ApiClient",
    "MirrorConflict",
    "SandboxAgent",
    "SandboxAgentError",
    "SandboxAgentSync",
    "Session",
    "SessionSync",
    "TurnResult",
]

#: Where each public name lives. Imported on first use: ``sdk.http`` (the CLI's client) must not
#: pull in the store, the replay engine and the mirror.
_HOMES = {
    "ApiClient": "sandbox_agent.sdk.http",
    "MirrorConflict": "sandbox_agent.sdk.errors",
    "SandboxAgent": "sandbox_agent.sdk.client",
    "SandboxAgentError": "sandbox_agent.sdk.errors",
    "SandboxAgentSync": "sandbox_agent.sdk.sync",
    "Session": "sandbox_agent.sdk.session",
    "SessionSync": "sandbox_agent.sdk.sync",
    "TurnResult": "sandbox_agent.sdk.session",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
