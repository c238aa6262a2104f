"""A backend process that uses the SDK with a SQLite store; test_sdk_recovery kills it.

Usage: python tests/sdk_backend.py BASE_URL STORE_URL SESSION_ID PROMPT
"""

from __future__ import annotations

import asyncio
import sys

from sandbox_agent import SandboxAgent


async def main(base_url: str, store_url: str, session_id: str, prompt: str) -> None:
    async with await SandboxAgent.connect(base_url, store=store_url) as sdk:
        session = await sdk.create_session(session_id, agent="mock")
        print("created", flush=True)
        result = await session.prompt(prompt)
        print("done", result.end_reason, flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
