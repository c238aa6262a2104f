"""Sandbox Agent: run coding agents in a sandbox, with every session kept as an event stream."""

from typing import TYPE_CHECKING, Any

from sandbox_agent.version import __version__

if TYPE_CHECKING:
    from sandbox_agent.sdk import SandboxAgent, SandboxAgentError, SandboxAgentSync

__all__ = ["SandboxAgent", "SandboxAgentError", "SandboxAgentSync", "__version__"]


def __getattr__(name: str) -> Any:
    # The SDK pulls in httpx and the store; import it only when asked for.
    if name in ("SandboxAgent", "SandboxAgentSync", "SandboxAgentError"):
        from sandbox_agent import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
