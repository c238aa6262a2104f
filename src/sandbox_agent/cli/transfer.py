"""``sandbox-agent export`` / ``import``: portable JSON Lines copies of sessions."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO, TextIO

import typer

from sandbox_agent.cli.app import (
    JsonOption,
    StoreOption,
    app,
    console,
    err_console,
    print_json,
    store_url,
)
from sandbox_agent.cli.replay import open_existing, run_replay

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

    from sandbox_agent.replay import ExportSummary, ImportSummary


def _progress(*columns: ProgressColumn) -> Progress:
    from rich.progress import Progress, SpinnerColumn, TimeElapsedColumn  # rich: on first use

    return Progress(
        SpinnerColumn(),
        *columns,
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
        disable=not err_console().is_terminal,
    )


@contextmanager
def _replace_atomically(path: Path) -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and move it over ``path`` only on success."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


@app.command("export")
def export_command(
    sessions: Annotated[list[str], typer.Argument(help="Session ids.", show_default=False)],
    output: Annotated[
        str, typer.Option("--output", "-o", help="The JSON Lines file to write (- for stdout).")
    ],
    store: StoreOption = None,
    decrypt: Annotated[
        bool,
        typer.Option(
            "--decrypt",
            help="Write encrypted payloads as plaintext (needs the keys; default: as stored).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Write sessions with all their events to a JSON Lines file (lossless). Payloads
    encrypted at rest stay encrypted unless --decrypt."""
    from rich.progress import MofNCompleteColumn, TextColumn

    from sandbox_agent.replay import export_sessions

    url = store_url(store)

    async def go(out: TextIO) -> ExportSummary:
        with _progress(TextColumn("exporting"), MofNCompleteColumn()) as bar:
            task = bar.add_task("export", total=None)
            async with await open_existing(url) as source:
                return await export_sessions(
                    source,
                    sessions,
                    out,
                    on_progress=lambda n: bar.advance(task, n),
                    decrypt=decrypt,
                )

    if output == "-":
        summary = run_replay(lambda: go(sys.stdout))
        sys.stdout.flush()
        report = err_console()
    else:
        with _replace_atomically(Path(output)) as out:
            summary = run_replay(lambda: go(out))
        report = console()
    if json_output and output != "-":
        print_json(summary.model_dump(mode="json"))
        return
    report.print(
        f"exported {len(summary.sessions)} session(s), {summary.events} event(s) to {output}",
        highlight=False,
        soft_wrap=True,
    )


def _lines_with_progress(file: BinaryIO, bar: Progress) -> Iterator[str]:
    task = bar.add_task("import", total=os.fstat(file.fileno()).st_size)
    for raw in file:
        bar.advance(task, len(raw))
        yield raw.decode("utf-8")


@app.command("import")
def import_command(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="A file written by export.", show_default=False
        ),
    ],
    store: StoreOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import sessions from an export file. Events already in the store are checked, not
    written again, so importing twice adds nothing."""
    from rich.progress import BarColumn, DownloadColumn, TextColumn

    from sandbox_agent.replay import import_sessions
    from sandbox_agent.store import open_store

    url = store_url(store)

    async def go() -> ImportSummary:
        with (
            file.open("rb") as source,
            _progress(TextColumn("importing"), BarColumn(), DownloadColumn()) as bar,
        ):
            async with await open_store(url) as target:
                return await import_sessions(target, _lines_with_progress(source, bar))

    summary = run_replay(go)
    if json_output:
        print_json(summary.model_dump(mode="json"))
        return
    console().print(
        f"imported {len(summary.sessions)} session(s) from {file}: "
        f"{len(summary.created)} created, {summary.events_written} event(s) written, "
        f"{summary.events_skipped} already present",
        highlight=False,
        soft_wrap=True,
    )
