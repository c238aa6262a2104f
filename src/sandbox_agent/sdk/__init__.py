"""The Python SDK (``spec/sdk.md``): ``SandboxAgent`` (async) and ``SandboxAgentSync``.

Example::

    async with await SandboxAgent.connect("http://127.0.0.1:2468", store="sqlite:///app.db") as sdk:
        session = await sdk.create_session(agent="mock")
        result = await session.prompt("Reply with exactly the single word OK.")
        print(result.text)
"""

from sandbox_agent.sdk.client import SandboxAgent
from sandbox_agent.sdk.errors import MirrorConflict, SandboxAgentError
from sandbox_agent.sdk.session import Session, TurnResult
from sandbox_agent.sdk.sync import SandboxAgentSync, SessionSync

__all__ = [
    "MirrorConflict",
    "SandboxAgent",
    "SandboxAgentError",
    "SandboxAgentSync",
    "Session",
    "SessionSync",
    "TurnResult",
]
