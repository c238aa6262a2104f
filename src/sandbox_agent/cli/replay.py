"""``sandbox-agent replay``: rebuild a session from a store as a transcript or a state, check its
invariants, diff two points of it, or follow it live."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from sandbox_agent.cli.app import JsonOption, StoreOption, app, fail, print_json, run, store_url

# The replay engine and the store load when the command runs: ``--help`` does not pay for them.
if TYPE_CHECKING:
    from sandbox_agent.replay import SessionState
    from sandbox_agent.store import EventStore, IntegrityReport

T = TypeVar("T")
FORMATS = ("markdown", "text", "json", "state")


def run_replay(make: Callable[[], Awaitable[T]]) -> T:
    """``run`` that also turns a replay error into a one-line reason and exit code 1."""
    from sandbox_agent.replay import ReplayError

    try:
        return run(make)
    except ReplayError as exc:
        fail(str(exc))


async def open_existing(url: str) -> EventStore:
    """Open a store to read it: a SQLite file that does not exist is an error, not a new store."""
    from sandbox_agent.replay import ReplayError
    from sandbox_agent.store import StoreNotFound, open_store

    try:
        return await open_store(url, create=False)
    except StoreNotFound as exc:
        raise ReplayError(str(exc)) from None


async def _states(url: str, session_id: str, points: list[int | None]) -> list[SessionState]:
    from sandbox_agent.replay import state_at

    async with await open_existing(url) as store:
        return [await state_at(store, session_id, point) for point in points]


async def _follow(url: str, session_id: str, after: int, as_json: bool) -> None:
    from sandbox_agent.replay import Replayer, state_at
    from sandbox_agent.replay.render import event_line

    async with await open_existing(url) as store:
        replayer = Replayer(await state_at(store, session_id, after), copy=False)
        seen = len(replayer.anomalies)
        async for event in store.subscribe(session_id, after=after):
            line = event.model_dump_json() if as_json else event_line(event)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            replayer.apply(event)
            for anomaly in replayer.anomalies[seen:]:
                sys.stderr.write(f"anomaly #{anomaly.sequence} {anomaly.kind}: {anomaly.message}\n")
                sys.stderr.flush()
            seen = len(replayer.anomalies)


async def _check_states(
    url: str, session_ids: list[str], every: bool, at: int | None, deep: bool
) -> tuple[list[SessionState], IntegrityReport | None]:
    """Full replays (no snapshot trusted) of ``session_ids``, or of every session of the store,
    each with the store's findings (its row against its events); with ``deep``, the database's
    own integrity check too."""
    from sandbox_agent.replay import check_session

    async with await open_existing(url) as store:
        if every:
            session_ids = [record.id for record in await store.all_sessions()]
        states = [await check_session(store, session_id, at) for session_id in session_ids]
        return states, (await store.check_integrity() if deep else None)


@app.command("replay")
def replay_command(
    sessions: Annotated[
        list[str] | None,
        typer.Argument(
            help="The session id (with --check, any number of them).", show_default=False
        ),
    ] = None,
    store: StoreOption = None,
    at: Annotated[
        int | None,
        typer.Option("--at", min=0, help="Rebuild the state after this sequence (default: all)."),
    ] = None,
    format: Annotated[
        str,
        typer.Option("--format", "-f", help="markdown, text or json transcript, or the state."),
    ] = "markdown",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="List invariant violations and damage (the session's row against its "
            "events); exit 1 if there are any.",
        ),
    ] = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep", help="With --check: run the database's own integrity check as well."
        ),
    ] = False,
    every: Annotated[
        bool, typer.Option("--all", help="With --check: every session of the store.")
    ] = False,
    diff_points: Annotated[
        tuple[int, int] | None,
        typer.Option("--diff", metavar="A B", help="What changed between sequences A and B."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Print events as they arrive (after --at N), until Ctrl-C."),
    ] = False,
    private_reasoning: Annotated[
        bool, typer.Option("--private-reasoning", help="Show private reasoning too.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Rebuild a session from a store: its transcript or state at any sequence."""
    if format not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    if sum([check, diff_points is not None, follow]) > 1:
        raise typer.BadParameter("use at most one of --check, --diff and --follow")
    ids = list(sessions or ())
    as_json = json_output or format in ("json", "state")
    url = store_url(store)
    if deep and not check:
        raise typer.BadParameter("--deep goes with --check only")
    if check and (every or len(ids) > 1):
        if every and ids:
            raise typer.BadParameter("give session ids or --all, not both")
        states, integrity = run_replay(lambda: _check_states(url, ids, every, at, deep))
        _report_checks(states, integrity, as_json)
        return
    if every:
        raise typer.BadParameter("--all goes with --check only")
    if len(ids) != 1:
        raise typer.BadParameter("give one session id (several only with --check)")
    session = ids[0]
    if follow:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how following ends
            run_replay(lambda: _follow(url, session, at or 0, as_json))
        return
    if diff_points is not None:
        from sandbox_agent.replay import diff, format_diff

        before, after = run_replay(lambda: _states(url, session, list(diff_points)))
        changes = diff(before, after)
        if as_json:
            print_json(changes.model_dump(mode="json"))
        else:
            sys.stdout.write(format_diff(changes))
        return
    if check:
        (state,), integrity = run_replay(lambda: _check_states(url, [session], False, at, deep))
        _report_check(state, integrity, as_json)
        return
    (state,) = run_replay(lambda: _states(url, session, [at]))
    if format == "state":
        print_json(state.to_json())
    else:
        from sandbox_agent.replay import render_transcript

        shown = "json" if json_output else format
        sys.stdout.write(render_transcript(state, shown, private_reasoning=private_reasoning))  # type: ignore[arg-type]


def _check_report(state: SessionState) -> dict[str, object]:
    return {
        "session_id": state.session_id,
        "events": state.event_count,
        "last_sequence": state.last_sequence,
        "anomalies": [a.model_dump(mode="json") for a in state.anomalies],
    }


def _write_check(state: SessionState) -> None:
    anomalies = state.anomalies
    if anomalies:
        sys.stdout.write(
            f"{len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'} in session "
            f"{state.session_id} ({state.event_count} events checked):\n"
        )
        for a in anomalies:
            sys.stdout.write(f"  #{a.sequence} {a.kind}: {a.message}\n")
    else:
        sys.stdout.write(
            f"no anomalies: session {state.session_id}, {state.event_count} events checked\n"
        )


def _integrity_report(report: IntegrityReport) -> dict[str, object]:
    return {
        "supported": report.supported,
        "ok": report.ok,
        "method": report.method,
        "problems": list(report.problems),
    }


def _write_integrity(report: IntegrityReport) -> None:
    if not report.supported:
        sys.stdout.write(f"integrity check: not supported: {report.method}\n")
    elif report.ok:
        sys.stdout.write(f"integrity check: ok ({report.method})\n")
    else:
        count = len(report.problems)
        sys.stdout.write(f"integrity check: {count} problem(s) ({report.method}):\n")
        for problem in report.problems:
            for line in problem.splitlines():
                sys.stdout.write(f"  {line}\n")


def _damaged(integrity: IntegrityReport | None) -> bool:
    """Whether the integrity check found something ("not supported" finds nothing)."""
    return integrity is not None and integrity.supported and not integrity.ok


def _report_check(state: SessionState, integrity: IntegrityReport | None, as_json: bool) -> None:
    if as_json:
        report = _check_report(state)
        if integrity is not None:
            report["integrity"] = _integrity_report(integrity)
        print_json(report)
    else:
        _write_check(state)
        if integrity is not None:
            _write_integrity(integrity)
    if state.anomalies or _damaged(integrity):
        raise typer.Exit(1)


def _report_checks(
    states: list[SessionState], integrity: IntegrityReport | None, as_json: bool
) -> None:
    """Several sessions: a JSON list of reports (with --deep: an object of ``sessions`` and
    ``integrity``), or a line (and the anomalies) per session."""
    if as_json:
        reports = [_check_report(state) for state in states]
        if integrity is None:
            print_json(reports)
        else:
            print_json({"sessions": reports, "integrity": _integrity_report(integrity)})
    else:
        for state in states:
            _write_check(state)
        broken = sum(1 for state in states if state.anomalies)
        sys.stdout.write(f"{len(states)} session(s) checked, {broken} with anomalies\n")
        if integrity is not None:
            _write_integrity(integrity)
    if any(state.anomalies for state in states) or _damaged(integrity):
        raise typer.Exit(1)


__all__ = ["open_existing", "replay_command", "run_replay"]
