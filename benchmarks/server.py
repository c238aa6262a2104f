"""Server benchmarks (issue 4): a real ``sandbox-agent server`` process, the mock agent at zero
delay, a SQLite store, measured from a client in this process.

    python benchmarks/server.py                       # the full run (10-20 s)
    python benchmarks/server.py --quick               # small counts: a smoke test only
    python benchmarks/server.py --json                # the figures as JSON
    python benchmarks/server.py --profile server.prof # the server under cProfile

Figures, each against its goal:

1. prompt round trip: ``POST /v1/sessions/{id}/messages`` with the "OK" prompt until that turn's
   ``turn.ended`` arrives on an SSE stream opened before (p50, p99 of ``--turns`` turns, after a
   warm-up);
2. SSE throughput: ``markdown`` turns back to back, each sent as soon as the previous one's
   ``turn.ended`` arrives; events received by one SSE client / wall time (every event is
   persisted: the server only streams what the store committed);
3. fan-out: ``--subscribers`` SSE clients of one session while ``markdown`` turns run one after
   another; the latency of an event at a subscriber is the wall clock when its bytes were read
   minus the event's ``time``, which the store stamps just before the insert (so it covers the
   commit, the wake-up, the subscriber's read, the JSON frame and the socket). Same machine, same
   clock;
4. concurrent creations: ``--creations`` ``POST /v1/sessions/{id}`` (mock agent) sent at once,
   each over its own connection opened before; p50, p99 of each request's latency;
5. an events page: ``GET /v1/sessions/{id}/events?offset=N&limit=50`` on the session of step 2
   (a few thousand events), ``--pages`` requests over offsets across it, one connection; p50,
   p99;
6. the server's ``VmRSS`` (``/proc/<pid>/status``) idle (after start-up, before any session) and
   loaded (after the runs above), and its peak ``VmHWM``.

For context, not against goals: the SSE stream of step 2 read again from the start (the SSE path
without appends), one-event appends to a SQLite store in this process (no server), and the
server's CPU time (``/proc/<pid>/stat``, all threads) per round trip, streamed event and fan-out
delivery, which other work on the machine disturbs less than wall times.

The client is a minimal HTTP/1.1 client over asyncio streams (uvloop when installed), so that
little of a round trip is the client's own time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

OK_PROMPT = "Reply with exactly the single word OK."
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Row:
    """A figure of the table, and its goal if it has one."""

    figure: str
    label: str
    unit: str
    bound: float | None = None
    at_most: bool = True  # the figure must be <= bound (else >=)

    def met(self, value: float) -> bool:
        assert self.bound is not None
        return value <= self.bound if self.at_most else value >= self.bound


ROWS = (
    Row("round_trip_p50_ms", "prompt round trip p50", "ms", 3.0),
    Row("round_trip_p99_ms", "prompt round trip p99", "ms"),
    Row("sse_events_per_s", "SSE events/s, one client", "events/s", 5600.0, at_most=False),
    Row("sse_backlog_events_per_s", "  the same events, stored backlog", "events/s"),
    Row("store_single_appends_per_s", "  one-event appends, store alone", "events/s"),
    Row("fanout_p50_ms", "fan-out latency p50", "ms"),
    Row("fanout_p99_ms", "fan-out latency p99", "ms", 10.0),
    Row("create_p50_ms", "concurrent session creation p50", "ms", 20.0),
    Row("create_p99_ms", "concurrent session creation p99", "ms"),
    Row("events_page_p50_ms", "events page of 50 p50", "ms", 1.5),
    Row("events_page_p99_ms", "events page of 50 p99", "ms"),
    Row("round_trip_server_cpu_ms", "server CPU per round trip", "ms", 1.5),
    Row("sse_server_cpu_us_per_event", "server CPU per streamed event", "us"),
    Row("fanout_server_cpu_us_per_delivery", "server CPU per fan-out delivery", "us"),
    Row("events_page_server_cpu_ms", "server CPU per events page", "ms"),
    Row("create_server_cpu_ms", "server CPU per session creation", "ms"),
    Row("idle_rss_mb", "idle RSS", "MB", 70.0),
    Row("loaded_rss_mb", "loaded RSS", "MB"),
    Row("peak_rss_mb", "peak RSS (VmHWM)", "MB"),
)


# -- the server process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# ``python -m cProfile`` never writes its file here: uvicorn re-raises SIGTERM after its graceful
# stop, which kills the process. Our SIGTERM handler (uvicorn restores it before re-raising) does.
PROFILED = """
import cProfile, runpy, signal, sys
out = sys.argv.pop(1)
profile = cProfile.Profile()
def stop(*_):
    profile.disable()
    profile.dump_stats(out)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
sys.argv[0] = "sandbox_agent"
profile.enable()
runpy.run_module("sandbox_agent", run_name="__main__", alter_sys=True)
"""


@contextlib.contextmanager
def server_process(
    db: Path, log: Path, profile: str | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m sandbox_agent server`` on a free port, mock delay 0; SIGTERM afterwards.
    With ``profile``, the server runs under cProfile and writes its stats there."""
    port = free_port()
    start = ["-c", PROFILED, profile] if profile else ["-m", "sandbox_agent"]
    command = [
        sys.executable, *start, "server",
        "-p", str(port), "--no-token", "--mock-delay-ms", "0",
        "--store", f"sqlite:///{db}", "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_AGENT_TOKEN"}
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process so far, all threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


# -- a minimal HTTP/1.1 client -------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: requests one at a time, or one SSE stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def close(self) -> None:
        self.writer.close()

    def send(self, method: str, path: str, body: Any = None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(payload)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)

    async def head(self) -> tuple[int, dict[str, str]]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        self.send(method, path, body)
        status, headers = await self.head()
        if headers.get("transfer-encoding") == "chunked":
            data = b"".join([chunk async for chunk in self.chunks()])
        else:
            data = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, data

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return
            yield chunk[:-2]

    async def sse(self, path: str) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """(wall clock when read, event) of each ``data:`` frame of an SSE stream."""
        self.send("GET", path)
        status, _ = await self.head()
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        buffer = b""
        async for chunk in self.chunks():
            received = time.time()
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                for line in frame.split(b"\n"):
                    if line.startswith(b"data: "):
                        yield received, json.loads(line[6:])


async def create_session(port: int, session_id: str) -> None:
    conn = await Connection.open(port)
    status, body = await conn.request("POST", f"/v1/sessions/{session_id}", {"agent": "mock"})
    conn.close()
    if status != 200:
        raise RuntimeError(f"create {session_id}: {status} {body!r}")


async def last_sequence(conn: Connection, session_id: str) -> int:
    # The session's info, not its events: reading them all would add to the server CPU
    # counted for the figures around it.
    status, body = await conn.request("GET", f"/v1/sessions/{session_id}")
    if status != 200:
        raise RuntimeError(f"session {session_id}: {status}")
    return int(json.loads(body)["lastSequence"])


async def post_message(conn: Connection, session_id: str, message: str) -> None:
    status, body = await conn.request(
        "POST", f"/v1/sessions/{session_id}/messages", {"message": message}
    )
    if status != 204:
        raise RuntimeError(f"message to {session_id}: {status} {body!r}")


async def open_stream(
    port: int, session_id: str, after: int
) -> tuple[Connection, AsyncIterator[tuple[float, dict[str, Any]]]]:
    conn = await Connection.open(port)
    return conn, conn.sse(f"/v1/sessions/{session_id}/events/sse?offset={after}").__aiter__()


async def until_turn_ended(stream: AsyncIterator[tuple[float, dict[str, Any]]]) -> int:
    """Read events up to the next ``turn.ended``; how many were read."""
    count = 0
    async for _, event in stream:
        count += 1
        if event["type"] == "turn.ended":
            return count
    raise RuntimeError("the SSE stream ended before turn.ended")


# -- the measurements ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def round_trip(port: int, turns: int, warmup: int) -> dict[str, float]:
    await create_session(port, "bench-rt")
    conn = await Connection.open(port)
    after = await last_sequence(conn, "bench-rt")
    sse_conn, stream = await open_stream(port, "bench-rt", after)
    times: list[float] = []
    for n in range(warmup + turns):
        start = time.perf_counter()
        await post_message(conn, "bench-rt", OK_PROMPT)
        await until_turn_ended(stream)
        if n >= warmup:
            times.append(time.perf_counter() - start)
    conn.close()
    sse_conn.close()
    return {
        "round_trip_p50_ms": percentile(times, 0.5) * 1000,
        "round_trip_p99_ms": percentile(times, 0.99) * 1000,
        "round_trip_turns": turns,
    }


async def throughput(port: int, turns: int, warmup: int) -> dict[str, float]:
    await create_session(port, "bench-sse")
    conn = await Connection.open(port)
    after = await last_sequence(conn, "bench-sse")
    sse_conn, stream = await open_stream(port, "bench-sse", after)
    for _ in range(warmup):
        await post_message(conn, "bench-sse", "markdown")
        await until_turn_ended(stream)
    events = 0
    start = time.perf_counter()
    for _ in range(turns):
        await post_message(conn, "bench-sse", "markdown")
        events += await until_turn_ended(stream)
    seconds = time.perf_counter() - start
    total = await last_sequence(conn, "bench-sse")
    conn.close()
    sse_conn.close()
    return {"sse_events_per_s": events / seconds, "sse_events": events, "sse_stored": total}


async def backlog(port: int, session_id: str, total: int) -> dict[str, float]:
    """A session's ``total`` stored events over SSE from the start: the SSE path alone."""
    conn, stream = await open_stream(port, session_id, 0)
    start = time.perf_counter()
    async for _, event in stream:
        if event["sequence"] >= total:
            break
    seconds = time.perf_counter() - start
    conn.close()
    return {"sse_backlog_events_per_s": total / seconds}


async def single_appends(directory: Path, count: int) -> dict[str, float]:
    """One-event appends to a SQLite store in this process, no server: the ceiling of a
    pipeline that commits each event on its own (as the mock's one-by-one emits do)."""
    from sandbox_agent.events import EventDraft
    from sandbox_agent.store import SessionRecord, open_store

    async with await open_store(f"sqlite:///{directory / 'appends.db'}") as store:
        await store.create_session(SessionRecord(id="a", agent="mock"))
        draft = {"type": "item.delta", "data": {"item_id": "m", "delta": "OK"}}
        start = time.perf_counter()
        for _ in range(count):
            await store.append("a", [EventDraft.model_validate(draft)])
        seconds = time.perf_counter() - start
    return {"store_single_appends_per_s": count / seconds}


async def fan_out(port: int, subscribers: int, turns: int, warmup: int) -> dict[str, float]:
    await create_session(port, "bench-fan")
    conn = await Connection.open(port)
    after = await last_sequence(conn, "bench-fan")
    streams = [await open_stream(port, "bench-fan", after) for _ in range(subscribers)]
    latencies: list[float] = []

    async def subscriber(stream: AsyncIterator[tuple[float, dict[str, Any]]], turn: int) -> None:
        async for received, event in stream:
            if turn >= warmup:
                sent = datetime.fromisoformat(event["time"]).timestamp()
                latencies.append(received - sent)
            if event["type"] == "turn.ended":
                return

    for turn in range(warmup + turns):
        readers = [asyncio.create_task(subscriber(s, turn)) for _, s in streams]
        await post_message(conn, "bench-fan", "markdown")
        await asyncio.gather(*readers)
    conn.close()
    for sse_conn, _ in streams:
        sse_conn.close()
    return {
        "fanout_p50_ms": percentile(latencies, 0.5) * 1000,
        "fanout_p99_ms": percentile(latencies, 0.99) * 1000,
        "fanout_subscribers": subscribers,
        "fanout_deliveries": len(latencies),
    }


async def creations(port: int, count: int) -> dict[str, float]:
    """``count`` session creations sent at once, each over its own connection (opened
    before, so that connecting is not timed): each request's latency."""
    conns = [await Connection.open(port) for _ in range(count)]

    async def create(n: int, conn: Connection) -> float:
        start = time.perf_counter()
        status, body = await conn.request(
            "POST", f"/v1/sessions/bench-create-{n}", {"agent": "mock"}
        )
        if status != 200:
            raise RuntimeError(f"create bench-create-{n}: {status} {body!r}")
        return time.perf_counter() - start

    times = await asyncio.gather(*(create(n, conn) for n, conn in enumerate(conns)))
    for conn in conns:
        conn.close()
    return {
        "create_p50_ms": percentile(list(times), 0.5) * 1000,
        "create_p99_ms": percentile(list(times), 0.99) * 1000,
        "creations": count,
    }


async def events_pages(port: int, session_id: str, total: int, pages: int) -> dict[str, float]:
    """``GET .../events?offset=N&limit=50`` at offsets spread over the session's ``total``
    stored events, one request at a time on one connection."""
    conn = await Connection.open(port)
    step = max(1, (total - 50) // pages)
    times: list[float] = []
    for n in range(pages):
        offset = (n * step) % max(1, total - 50)
        start = time.perf_counter()
        status, body = await conn.request(
            "GET", f"/v1/sessions/{session_id}/events?offset={offset}&limit=50"
        )
        times.append(time.perf_counter() - start)
        if status != 200 or len(json.loads(body)["events"]) != min(50, total - offset):
            raise RuntimeError(f"events page at {offset}: {status}")
    conn.close()
    return {
        "events_page_p50_ms": percentile(times, 0.5) * 1000,
        "events_page_p99_ms": percentile(times, 0.99) * 1000,
    }


async def measure(port: int, pid: int, args: argparse.Namespace) -> dict[str, float]:
    await asyncio.sleep(args.settle)
    figures = {"idle_rss_mb": rss_mb(pid)}
    cpu = cpu_seconds(pid)
    figures |= await round_trip(port, args.turns, args.warmup)
    cpu, used = cpu_seconds(pid), cpu_seconds(pid) - cpu
    figures["round_trip_server_cpu_ms"] = used / (args.turns + args.warmup) * 1000
    figures |= await throughput(port, args.sse_turns, args.warmup)
    cpu, used = cpu_seconds(pid), cpu_seconds(pid) - cpu
    figures["sse_server_cpu_us_per_event"] = used / figures["sse_stored"] * 1e6
    figures |= await backlog(port, "bench-sse", int(figures["sse_stored"]))
    cpu = cpu_seconds(pid)
    figures |= await events_pages(port, "bench-sse", int(figures["sse_stored"]), args.pages)
    figures["events_page_server_cpu_ms"] = (cpu_seconds(pid) - cpu) / args.pages * 1000
    cpu = cpu_seconds(pid)
    figures |= await creations(port, args.creations)
    figures["create_server_cpu_ms"] = (cpu_seconds(pid) - cpu) / args.creations * 1000
    cpu = cpu_seconds(pid)
    figures |= await fan_out(port, args.subscribers, args.fanout_turns, args.warmup)
    used = cpu_seconds(pid) - cpu
    deliveries = (
        figures["fanout_deliveries"] * (args.fanout_turns + args.warmup) / args.fanout_turns
    )
    figures["fanout_server_cpu_us_per_delivery"] = used / deliveries * 1e6
    figures["loaded_rss_mb"] = rss_mb(pid)
    figures["peak_rss_mb"] = rss_mb(pid, "VmHWM")
    return figures


def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        log = Path(args.log) if args.log else Path(directory) / "server.log"
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        with server_process(Path(directory) / "bench.db", log, args.profile) as (proc, port):
            figures = dict(runner(measure(port, proc.pid, args)))
        figures |= runner(single_appends(Path(directory), args.appends))
    return figures


# -- output --------------------------------------------------------------------------------------


def report(figures: dict[str, float], as_json: bool, load: tuple[float, float]) -> None:
    """The table (or JSON); ``load`` is the machine's 1-minute load average before and after,
    since other work on the machine moves every figure."""
    context = {
        "cpus": os.cpu_count(),
        "load_average_before": load[0],
        "load_average_after": load[1],
    }
    goals = {
        r.figure: {"goal": r.bound, "at_most": r.at_most, "met": r.met(figures[r.figure])}
        for r in ROWS
        if r.bound is not None
    }
    if as_json:
        json.dump({"figures": figures, "goals": goals, "context": context}, sys.stdout, indent=2)
        print()
        return
    table = Table(
        title=f"sandbox-agent server, mock agent at zero delay, SQLite "
        f"({int(figures['round_trip_turns'])} round trips, {int(figures['sse_events'])} SSE "
        f"events, {int(figures['fanout_subscribers'])} subscribers)"
    )
    for name in ("figure", "value", "goal", "met"):
        table.add_column(name, justify="left" if name == "figure" else "right")
    for r in ROWS:
        value = figures[r.figure]
        shown = f"{value:,.0f} {r.unit}" if r.unit == "events/s" else f"{value:.2f} {r.unit}"
        if r.bound is None:
            table.add_row(r.label, shown, "", "")
            continue
        bound = f"{r.bound:,.0f}" if r.unit == "events/s" else f"{r.bound:g}"
        met = "[green]yes[/green]" if r.met(value) else "[red]no[/red]"
        table.add_row(r.label, shown, f"{'<=' if r.at_most else '>='} {bound} {r.unit}", met)
    console = Console()
    console.print(table)
    console.print(
        f"{context['cpus']} CPUs, load average {load[0]:.1f} before, {load[1]:.1f} after "
        "(anything else running moves these figures)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300, help="round trips measured")
    parser.add_argument("--sse-turns", type=int, default=150, help="markdown turns streamed")
    parser.add_argument("--fanout-turns", type=int, default=30, help="markdown turns fanned out")
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--creations", type=int, default=20, help="sessions created at once")
    parser.add_argument("--pages", type=int, default=300, help="events pages of 50 read")
    parser.add_argument("--appends", type=int, default=3000, help="store-only one-event appends")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured turns before each")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds idle before idle RSS")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", help="run the server under cProfile, writing this file")
    parser.add_argument("--log", help="the server's log file (default: a temporary one)")
    args = parser.parse_args()
    if args.quick:
        args.turns, args.sse_turns, args.fanout_turns = 10, 5, 2
        args.subscribers, args.warmup, args.settle, args.appends = 3, 1, 0.2, 100
        # The server's CPU is counted in 10 ms ticks: fewer creations or pages can read as 0.
        args.creations, args.pages = 20, 40
    before = os.getloadavg()[0]
    figures = run(args)
    report(figures, args.json, (before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
