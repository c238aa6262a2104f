"""The ACP workload (issue 17): this server's ``/v1/acp`` against upstream's, in the same run.

    python benchmarks/acp.py                  # ours, and upstream's when its binary is found
    python benchmarks/acp.py --quick --json   # small counts (a smoke test), figures as JSON
    python benchmarks/acp.py --upstream PATH  # upstream's sandbox-agent binary (0.4.2)

Upstream's binary: ``npm install --prefix benchmarks/upstream @sandbox-agent/cli@0.4.2`` puts it
at ``benchmarks/upstream/node_modules/@sandbox-agent/cli-linux-x64/bin/sandbox-agent`` (looked
for there by default; ``chmod +x`` it when npm skipped its install script). Without it, ours only.

The workload, on each server (a fresh one, the ``mock`` agent):

1. ``initialize``, ``session/new``;
2. prompt round trip: ``--prompts`` sequential ``session/prompt`` POSTs, each timed until its
   200 answer (p50, p99);
3. fan-out: ``--subscribers`` SSE clients of the server (connected, past their backlog: each
   read a warm-up prompt's notification) while ``--fanout-prompts`` prompts run one after the
   other; a delivery's latency is from the POST's start to the moment a subscriber read that
   prompt's notification (p50, p99);
4. replay: after ``--replay-prompts`` more prompts (400: about 900 messages in all, within
   upstream's ring), one SSE client with ``Last-Event-ID: 0`` reads everything the server kept
   (upstream: its ring of the last 1,024 messages; ours: all of it, from the store); messages/s
   from the request to the last message read.

Ours persists every envelope (SQLite, each append committed before the envelope goes on);
upstream keeps nothing. The goals of the issue, as ratios ours/upstream in the same run: round
trip p50 at most 3x, fan-out p99 at most 2x, replay messages/s at least 1x. A third column runs
ours with upstream's mock agent process (``sandbox-agent mock-agent-process``, relayed over stdio
as any ACP agent) instead of our in-process mock: the same agent on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
DEFAULT_UPSTREAM = (
    Path(__file__).parent / "upstream/node_modules/@sandbox-agent/cli-linux-x64/bin/sandbox-agent"
)
GOALS = {  # figure -> (bound on ours/upstream, at most?)
    "round_trip_p50_ms": (3.0, True),
    "fanout_p99_ms": (2.0, True),
    "replay_messages_per_s": (1.0, False),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(command: list[str], port: int, log: Path, env: dict[str, str]) -> Iterator[str]:
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rpc(request_id: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


class Client:
    def __init__(self, url: str, server_id: str, agent: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=60)
        self.path = f"/v1/acp/{server_id}"
        self.agent = agent
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        query = {"agent": self.agent} if self.next_id == 1 else None
        r = await self.http.post(self.path, json=rpc(self.next_id, method, **params), params=query)
        r.raise_for_status()
        answer: dict[str, Any] = r.json()
        return answer

    async def frames(
        self, last_event_id: str | None, out: asyncio.Queue[tuple[float, dict[str, Any]]]
    ) -> None:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        base = str(self.http.base_url)
        async with (
            httpx.AsyncClient(base_url=base, timeout=None) as http,
            http.stream("GET", self.path, headers=headers) as r,
        ):
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    out.put_nowait((time.perf_counter(), json.loads(line[5:])))


async def workload(url: str, agent: str, args: argparse.Namespace) -> dict[str, float]:
    client = Client(url, f"bench-{os.getpid()}-{time.monotonic_ns()}", agent)
    await client.call("initialize", protocolVersion=1, clientCapabilities={})
    created = await client.call("session/new", cwd="/", mcpServers=[])
    # Upstream 0.4.2's mock agent echoes every request (a ``mock/echo`` notification, then the
    # request as its result): no session id, no stop reason. Ours answers as upstream's test
    # mock. Either way: one notification, then the answer, per prompt.
    session = created.get("result", {}).get("sessionId", "mock-session")

    async def prompt(text: str) -> None:
        answer = await client.call(
            "session/prompt", sessionId=session, prompt=[{"type": "text", "text": text}]
        )
        if "result" not in answer:
            raise RuntimeError(f"prompt: {answer}")

    for n in range(args.warmup):
        await prompt(f"warm {n}")
    trips = []
    for n in range(args.prompts):
        start = time.perf_counter()
        await prompt(f"trip {n}")
        trips.append((time.perf_counter() - start) * 1000)

    queues: list[asyncio.Queue[tuple[float, dict[str, Any]]]] = [
        asyncio.Queue() for _ in range(args.subscribers)
    ]
    # No Last-Event-ID: upstream replays its ring first, ours everything; both are skipped by
    # matching each prompt's own text, after a warm-up prompt every subscriber has read.
    tasks = [asyncio.create_task(client.frames(None, q)) for q in queues]

    async def delivered(text: str) -> list[float]:
        """When each subscriber read the notification of the prompt ``text``."""
        times = []
        for q in queues:
            while True:
                at, message = await asyncio.wait_for(q.get(), 30)
                # The prompt's notification (not its response, also streamed).
                if "method" in message and text in json.dumps(message):
                    times.append(at)
                    break
        return times

    # Warm-up: every subscriber connected, past its backlog and reading live.
    await prompt("fan warm")
    await delivered("fan warm")
    latencies: list[float] = []
    for n in range(args.fanout_prompts):
        text = f"fan {n}"
        start = time.perf_counter()
        await prompt(text)
        latencies += [(at - start) * 1000 for at in await delivered(text)]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    for n in range(args.replay_prompts):  # a backlog worth reading (within upstream's ring)
        await prompt(f"backlog {n}")
    replayed: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    start = time.perf_counter()
    reader = asyncio.create_task(client.frames("0", replayed))
    count, last = 0, start
    with contextlib.suppress(TimeoutError):
        while True:
            last, _ = await asyncio.wait_for(replayed.get(), 1.0)
            count += 1
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    with contextlib.suppress(httpx.HTTPError):
        # Upstream's DELETE did not answer within seconds here: not part of the workload.
        await client.http.delete(client.path, timeout=5)
    await client.http.aclose()
    return {
        "round_trip_p50_ms": percentile(trips, 0.5),
        "round_trip_p99_ms": percentile(trips, 0.99),
        "fanout_p50_ms": percentile(latencies, 0.5),
        "fanout_p99_ms": percentile(latencies, 0.99),
        "replay_messages": float(count),
        "replay_messages_per_s": count / max(last - start, 1e-9),
    }


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    upstream = Path(args.upstream)
    has_upstream = upstream.is_file() and os.access(upstream, os.X_OK)
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_AGENT_TOKEN"}
    with tempfile.TemporaryDirectory(prefix="acp-bench-") as tmp:
        directory = Path(tmp)
        ours: list[tuple[str, str, list[str]]] = [("ours", "mock", [])]
        if has_upstream:
            command = shlex.join([str(upstream), "mock-agent-process"])
            ours.append(("ours_upstream_mock", "umock", ["--acp-agent", f"umock={command}"]))
        for name, agent, extra in ours:
            port = free_port()
            command = [
                sys.executable, "-m", "sandbox_agent", "server", "-p", str(port), "--no-token",
                "--store", f"sqlite:///{directory / (name + '.db')}", "--log-level", "warning",
                *extra,
            ]  # fmt: skip
            with serve(command, port, directory / f"{name}.log", env) as url:
                results[name] = asyncio.run(workload(url, agent, args))
        if has_upstream:
            port = free_port()
            home = directory / "upstream-home"
            home.mkdir()
            upstream_env = {**env, "HOME": str(home)}
            # Its server's lazy install of the mock fails (no launcher); install-agent writes it.
            subprocess.run(
                [str(upstream), "install-agent", "mock"],
                env=upstream_env,
                check=True,
                capture_output=True,
            )
            command = [str(upstream), "server", "-p", str(port), "--no-token", "--no-telemetry"]
            with serve(command, port, directory / "upstream.log", upstream_env) as url:
                results["upstream"] = asyncio.run(workload(url, "mock", args))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--upstream", default=str(DEFAULT_UPSTREAM), help="upstream's binary")
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--subscribers", type=int, default=None)
    args = parser.parse_args()
    args.prompts = args.prompts or (3 if args.quick else 10)
    args.subscribers = args.subscribers or (3 if args.quick else 20)
    args.warmup = 1 if args.quick else 3
    args.fanout_prompts = 3 if args.quick else 20
    args.replay_prompts = 5 if args.quick else 400
    results = run(args)
    goals = {}
    if "upstream" in results:
        for figure, (bound, at_most) in GOALS.items():
            ratio = results["ours"][figure] / max(results["upstream"][figure], 1e-9)
            goals[figure] = {
                "ratio": ratio,
                "bound": bound,
                "met": ratio <= bound if at_most else ratio >= bound,
            }
    if args.json:
        print(json.dumps({"figures": results, "goals": goals}, indent=2))
        return
    names = list(results)
    print(f"{'figure':28}" + "".join(f"{n:>22}" for n in names))
    for figure in results["ours"]:
        print(f"{figure:28}" + "".join(f"{results[n][figure]:>22.2f}" for n in names))
    for figure, goal in goals.items():
        mark = "met" if goal["met"] else "NOT met"
        print(f"{figure}: ours/upstream {goal['ratio']:.2f} (goal {goal['bound']}) {mark}")
    if not goals:
        print(f"(upstream's binary not found at {args.upstream}: ours only)")


if __name__ == "__main__":
    main()
