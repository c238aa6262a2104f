"""The OpenAPI document of the server, and the committed copy in ``docs/openapi.json``.

Regenerate the copy with ``python -m sandbox_agent.server.openapi docs/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sandbox_agent.server.app import create_app
from sandbox_agent.server.config import ServerConfig


def openapi_document() -> dict[str, Any]:
    """What ``GET /openapi.json`` serves."""
    return create_app(ServerConfig()).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> None:
    text = render(openapi_document())
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
