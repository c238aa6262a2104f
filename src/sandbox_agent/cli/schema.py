"""``sandbox-agent schema [-o DIR]``: the JSON Schemas of the event model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sandbox_agent.cli.app import app


@app.command("schema")
def schema_command(
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="DIR",
            file_okay=False,
            help="Write one <name>.schema.json file per schema to DIR (created if missing).",
        ),
    ] = None,
) -> None:
    """Print the JSON Schemas of the event model as one JSON object, or write them to DIR."""
    from sandbox_agent.events.schema import event_json_schemas, schema_text, write_json_schemas

    if output is None:
        sys.stdout.write(schema_text(event_json_schemas()))
        return
    for path in write_json_schemas(output):
        typer.echo(path)
