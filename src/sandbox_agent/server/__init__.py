"""The HTTP server (``spec/http-api.md``): ``create_app(config)`` and its ``ServerConfig``."""

from sandbox_agent.server.app import create_app
from sandbox_agent.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
