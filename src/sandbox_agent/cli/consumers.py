"""``sandbox-agent consumers`` (their checkpoints and lag; reset, delete) and ``sandbox-agent
publish nats`` (the built-in consumer that publishes every event to NATS JetStream)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sandbox_agent.cli.app import (
    JsonOption,
    StoreOption,
    app,
    console,
    err_console,
    fail,
    group,
    print_json,
    run,
    store_url,
)

# The store loads when a command runs: ``--help`` does not pay for it.
if TYPE_CHECKING:
    from sandbox_agent.store.checkpoints import CheckpointRow


async def _consumers(
    url: str, reset: str | None, to: int, delete: str | None
) -> list[CheckpointRow]:
    from sandbox_agent.consumers import delete_consumer, list_consumers, reset_consumer
    from sandbox_agent.store import open_store

    async with await open_store(url, create=False) as store:
        if reset is not None:
            await reset_consumer(store, reset, to)
        if delete is not None and not await delete_consumer(store, delete):
            fail(f"no consumer named {delete!r} in this store")
        return await list_consumers(store)


@app.command("consumers")
def consumers_command(
    store: StoreOption = None,
    reset: Annotated[
        str | None,
        typer.Option(
            help="Move this consumer's checkpoint to --to (it applies the events after it "
            "again), then list.",
            show_default=False,
        ),
    ] = None,
    to: Annotated[int, typer.Option(min=0, help="The position --reset moves to.")] = 0,
    delete: Annotated[
        str | None,
        typer.Option(help="Forget this consumer's checkpoint, then list.", show_default=False),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """List the store's consumers with their checkpoint position and lag (events after it)."""
    from sandbox_agent.events import format_time

    rows = run(lambda: _consumers(store_url(store), reset, to, delete))
    if json_output:
        print_json(
            [
                {
                    "name": r.name,
                    "position": r.position,
                    "lag": r.lag,
                    "updated_at": format_time(r.updated_at),
                }
                for r in rows
            ]
        )
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} consumer(s)", title_justify="left")
    table.add_column("name")
    table.add_column("position", justify="right")
    table.add_column("lag", justify="right")
    table.add_column("updated")
    for r in rows:
        table.add_row(r.name, str(r.position), str(r.lag), format_time(r.updated_at))
    console().print(table)


publish_app = group("Publish every event of a store to a message broker, exactly once.")
app.add_typer(publish_app, name="publish")


@publish_app.command("nats")
def publish_nats_command(
    stream: Annotated[str, typer.Option(help="The JetStream stream.", show_default=False)],
    subject_prefix: Annotated[
        str,
        typer.Option(
            help="Subjects are <prefix>.<session>.<type> (the stream made on <prefix>.>).",
            show_default=False,
        ),
    ],
    store: StoreOption = None,
    server: Annotated[
        list[str] | None,
        typer.Option(help="A NATS server URL (repeatable).", show_default=False),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The consumer's name (default nats:<stream>).", show_default=False),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Events published per checkpoint.")
    ] = 100,
    duplicate_window: Annotated[
        float,
        typer.Option(
            min=0.001, help="Seconds of the de-duplication window of a stream it creates."
        ),
    ] = 120.0,
    create_stream: Annotated[
        bool, typer.Option(help="Create the stream when it is missing.")
    ] = True,
    until_caught_up: Annotated[
        bool,
        typer.Option(help="Stop once every stored event is published (default: follow)."),
    ] = False,
) -> None:
    """Publish every event of the store to NATS JetStream, each once (Nats-Msg-Id)."""
    rc = run(
        lambda: _publish(
            store_url(store),
            server or ["nats://127.0.0.1:4222"],
            stream,
            subject_prefix,
            name,
            batch_size,
            duplicate_window,
            create_stream,
            until_caught_up,
        )
    )
    raise typer.Exit(rc)


async def _publish(
    url: str,
    servers: list[str],
    stream: str,
    prefix: str,
    name: str | None,
    batch_size: int,
    duplicate_window: float,
    create_stream: bool,
    until_caught_up: bool,
) -> int:
    import asyncio
    import signal

    from sandbox_agent.consumers.jetstream import JetStreamPublisher
    from sandbox_agent.store import open_store

    async with await open_store(url, create=False) as store:
        publisher = JetStreamPublisher(
            store,
            servers=servers,
            stream=stream,
            subject_prefix=prefix,
            name=name,
            batch_size=batch_size,
            duplicate_window=duplicate_window,
            create_stream=create_stream,
        )
        try:
            async with publisher:
                if until_caught_up:
                    await publisher.run_until_caught_up()
                else:
                    stop = asyncio.Event()
                    loop = asyncio.get_running_loop()
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        loop.add_signal_handler(sig, stop.set)
                    await publisher.run(stop)
        except (OSError, TimeoutError) as exc:
            fail(f"NATS at {', '.join(servers)}: {exc!r}")
        except Exception as exc:
            if type(exc).__module__.startswith("nats"):
                fail(f"NATS at {', '.join(servers)}: {exc!r}")
            raise
        stats = publisher.stats
        err_console().print(
            f"published {stats.published} event(s) to {stream} "
            f"({stats.duplicates} duplicate(s) dropped by JetStream); "
            f"checkpoint {publisher.consumer.name} at {publisher.consumer.position}",
            highlight=False,
        )
    return 0
