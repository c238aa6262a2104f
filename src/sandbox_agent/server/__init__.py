"""The HTTP server (``spec/http-api.md``): ``create_app(config)`` and its ``ServerConfig``."""

from typing import TYPE_CHECKING, Any

from sandbox_agent.server.config import ServerConfig

if TYPE_CHECKING:
    from sandbox_agent.server.app import create_app

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # The app pulls in FastAPI, the agents and the routes: import it only when asked for, so
    # ``sandbox_agent.server.config`` (the CLI's option defaults) stays cheap to import.
    if name == "create_app":
        from sandbox_agent.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
