"""``sandbox-agent inspect --store URL``: the inspector web UI over any store, read-only unless
``--writable`` (then it can fork). No agent runs and no server state is touched: the store is
opened as it is (no migration, no claim) and only read."""

from __future__ import annotations

from typing import Annotated

import typer

from sandbox_agent.cli.app import StoreOption, app, fail, store_url

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@app.command("inspect")
def inspect_command(
    store: StoreOption = None,
    host: Annotated[str, typer.Option("-H", "--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("-p", "--port", min=0, max=65535, help="Port.")] = 2469,
    writable: Annotated[
        bool, typer.Option("--writable", help="Allow forking sessions (writes to the store).")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
) -> None:
    """Serve the inspector web UI over a store (default 127.0.0.1:2469, read-only)."""
    import asyncio
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "jinja2")):
        fail("inspect needs the server's web stack: pip install 'sandbox-agent[server]'")

    import uvicorn

    from sandbox_agent.inspector import Options, build_inspector
    from sandbox_agent.store import StoreError, open_store

    if host not in LOOPBACK:
        # No token here: whoever reaches the port reads every session.
        fail(f"inspect serves on loopback only ({', '.join(sorted(LOOPBACK))}), not {host!r}")
    url = store_url(store)

    async def serve() -> None:
        try:
            opened = await open_store(url, create=False, migrate=False)
        except StoreError as exc:
            fail(str(exc))
        try:
            inspector = build_inspector(opened, Options(writable=writable))
            inspector.env  # noqa: B018  templates loaded now: the first page is not the slow one
            config = uvicorn.Config(
                inspector.app(), host=host, port=port, log_level=log_level, lifespan="off"
            )
            server = uvicorn.Server(config)
            mode = "writable" if writable else "read-only"
            typer.echo(f"inspector on http://{host}:{port}/ ({mode})", err=True)
            await server.serve()
        finally:
            await opened.close()

    asyncio.run(serve())
