"""Agent benchmarks (issue 6, "Measure"): what our server adds to a turn of each real agent CLI.

    python benchmarks/agents.py                        # every installed agent, 10 turns a prompt
    python benchmarks/agents.py --quick                # 2 turns a prompt: a smoke test only
    python benchmarks/agents.py --agents claude,amp    # some agents
    python benchmarks/agents.py --json                 # the figures as JSON

Per agent, against the same fake backend (``tests/helpers/fake_llm.py``; ``fake_amp.py`` for
amp), in the same offline environment (``tests/helpers/agent_env.py``) and the same workspace:

1. the baseline: the CLI driven directly, the way our adapter drives it, with no server of ours:

   - claude: one long-lived ``claude -p --input-format stream-json --output-format stream-json
     --verbose --include-partial-messages --permission-prompt-tool stdio
     --dangerously-skip-permissions``; from writing the ``user`` line to its ``result`` line;
   - codex: one ``codex app-server`` (thread with approval ``never``, sandbox
     ``danger-full-access``); from writing ``turn/start`` to its ``turn/completed``;
   - opencode: ``opencode serve`` and its ``/global/event`` stream (session created with the
     allow-all ruleset); from ``POST /session/{id}/prompt_async`` to the ``session.idle`` after it;
   - amp: one ``amp [threads continue T] -x --stream-json --stream-json-input ...
     --dangerously-allow-all`` process a turn; from spawning it to its ``result`` line (where our
     adapter ends the turn; the process exit is awaited, untimed, before the next turn);
   - acp:claude: ``claude-agent-acp`` over JSON-RPC (``initialize``, ``session/new``,
     ``session/set_mode bypassPermissions``); from the ``session/prompt`` request to its answer;

2. through our server: a real ``sandbox-agent server`` process (SQLite store) with a session of
   the agent (permission mode ``bypass``; agent mode ``bypassPermissions`` for acp:claude); from
   ``POST /v1/sessions/{id}/messages`` to that turn's ``turn.ended`` on an SSE stream opened
   before.

Both are warm: the process start, the handshake and the session creation are not timed, and
``--warmup`` turns run first. The baseline runs first, then ours (one after the other, so a
change of the machine's load between them moves the difference: compare the load printed).
Prompts: ``plain`` ("Say hello") and ``tool`` (``CMD<<echo hi>>``: a shell tool call that
really runs, then the answer). For each: p50 and p90 of ``--turns`` turns, ours minus the
baseline (ms) and ours / baseline; plus the server's CPU time per turn (``/proc/<pid>/stat``, all
threads), which other work on the machine disturbs less than the wall times. The fake LLM's
history grows by the same turns in both runs.

An agent whose CLI is not installed is skipped (and listed so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE)]

from sandbox_agent.agents.install import command_of  # noqa: E402
from sandbox_agent.testing.server import ServerProcess  # noqa: E402
from server import (  # noqa: E402  (benchmarks/server.py: its HTTP client and helpers)
    Connection,
    cpu_seconds,
    last_sequence,
    open_stream,
    percentile,
    post_message,
)

from helpers.agent_env import AGENTS_DIR, offline_env, prepare_workspace  # noqa: E402
from helpers.fake_amp import FakeAmp  # noqa: E402
from helpers.fake_llm import FakeLLM  # noqa: E402

AGENTS = ("claude", "codex", "opencode", "amp", "acp:claude")
PROMPTS = {"plain": "Say hello", "tool": "CMD<<echo hi>>"}
#: Seconds one turn may take before the run fails (the machine may be busy).
TURN_TIMEOUT = 120.0
START_TIMEOUT = 120.0
AMP_KEY = "sgamp_fake_key"
MAX_LINE = 64 * 1024 * 1024

Times = dict[str, list[float]]


# -- the baselines: each CLI driven directly ----------------------------------------------------


class Child:
    """An agent CLI in its own process group: JSON lines on stdin/stdout, stderr to a file."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Child:
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env={**env, "PWD": str(cwd)},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                limit=MAX_LINE,
            )
        return cls(proc)

    async def write(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    async def read(self) -> dict[str, Any]:
        """The next JSON object on stdout (other lines skipped); EOFError at the end."""
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), TURN_TIMEOUT)
            if not line:
                raise EOFError(f"the agent exited ({self.proc.returncode})")
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict):
                    return message

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        else:  # its group may live on (node wrappers)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class Rpc:
    """JSON-RPC 2.0 over a ``Child``: requests we send, and the agent's own requests answered
    by ``on_request`` (a result dict, or None for a method-not-found error)."""

    def __init__(
        self,
        child: Child,
        on_request: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda _: None,
        version: bool = True,
    ) -> None:
        self.child = child
        self.on_request = on_request
        self.version = version  # codex's app-server omits "jsonrpc"
        self.ids = iter(range(1, 1_000_000))
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def _frame(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", **message} if self.version else message

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        request_id = next(self.ids)
        await self.child.write(self._frame({"id": request_id, "method": method, "params": params}))
        while True:
            message = await self.pump()
            if message is not None and message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result")

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.child.write(self._frame({"method": method, "params": params}))

    async def pump(self) -> dict[str, Any] | None:
        """Read one message: a response is returned; a notification goes to ``notifications``
        and a request of the agent is answered (both None)."""
        message = await self.child.read()
        if "method" not in message:
            return message
        if "id" not in message:
            self.notifications.put_nowait(message)
            return None
        result = self.on_request(message)
        if result is None:
            error = {"code": -32601, "message": "not supported by the benchmark"}
            await self.child.write(self._frame({"id": message["id"], "error": error}))
        else:
            await self.child.write(self._frame({"id": message["id"], "result": result}))
        return None

    async def notification(self, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next notification ``accept`` takes (those before it are dropped)."""
        while True:
            while not self.notifications.empty():
                message = self.notifications.get_nowait()
                if accept(message):
                    return message
            await self.pump()  # a response nobody waits on is dropped


async def timed_turns(
    prompts: list[str], turns: int, warmup: int, turn: Callable[[str], Awaitable[None]]
) -> Times:
    """``warmup`` plain turns, then ``turns`` turns of each prompt; seconds of each."""
    for _ in range(warmup):
        await turn(PROMPTS["plain"])
    times: Times = {}
    for name in prompts:
        times[name] = []
        for _ in range(turns):
            start = time.perf_counter()
            await turn(PROMPTS[name])
            times[name].append(time.perf_counter() - start)
    return times


async def claude_baseline(ctx: Context) -> Times:
    argv = [
        *ctx.command, "-p",
        "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
        "--include-partial-messages", "--permission-prompt-tool", "stdio",
        "--session-id", str(uuid.uuid4()), "--dangerously-skip-permissions",
    ]  # fmt: skip
    child = await Child.spawn(argv, ctx.workspace, ctx.env, ctx.log("claude"))
    try:
        init = {"type": "control_request", "request_id": "init_1",
                "request": {"subtype": "initialize", "hooks": None}}  # fmt: skip
        await child.write(init)
        while (await child.read()).get("type") != "control_response":
            pass

        async def turn(prompt: str) -> None:
            await child.write({"type": "user", "message": {"role": "user", "content": prompt},
                               "parent_tool_use_id": None, "session_id": ""})  # fmt: skip
            while True:
                line = await child.read()
                if line.get("type") == "result":
                    return
                if line.get("type") == "control_request":
                    raise RuntimeError(f"claude asked: {line}")  # bypass: it never should

        return await timed_turns(ctx.prompts, ctx.turns, ctx.warmup, turn)
    finally:
        await child.stop()


async def codex_baseline(ctx: Context) -> Times:
    child = await Child.spawn(
        [*ctx.command, "app-server"], ctx.workspace, ctx.env, ctx.log("codex")
    )
    try:
        rpc = Rpc(child, version=False)
        info = {"name": "bench", "title": "bench", "version": "0.1"}
        await rpc.request("initialize", {"clientInfo": info})
        await rpc.notify("initialized", {})
        started = await rpc.request(
            "thread/start",
            {"cwd": str(ctx.workspace), "approvalPolicy": "never",
             "sandbox": "danger-full-access"},
        )  # fmt: skip
        thread = started["thread"]["id"]

        def completed(message: dict[str, Any]) -> bool:
            params = message.get("params") or {}
            return bool(message["method"] == "turn/completed" and params.get("threadId") == thread)

        async def turn(prompt: str) -> None:
            text = [{"type": "text", "text": prompt, "text_elements": []}]
            await rpc.request("turn/start", {"threadId": thread, "input": text})
            await rpc.notification(completed)

        return await timed_turns(ctx.prompts, ctx.turns, ctx.warmup, turn)
    finally:
        await child.stop()


BYPASS_RULES = [{"permission": "*", "pattern": "*", "action": "allow"}]


async def opencode_baseline(ctx: Context) -> Times:
    port = free_port()
    argv = [*ctx.command, "serve", "--port", str(port), "--hostname", "127.0.0.1"]
    child = await Child.spawn(argv, ctx.workspace, ctx.env, ctx.log("opencode"))
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    connected = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def drain() -> None:  # stdout must be read or its pipe fills
        assert child.proc.stdout is not None
        while await child.proc.stdout.readline():
            pass

    async def listen(client: httpx.AsyncClient) -> None:
        async with aconnect_sse(client, "GET", "/global/event", timeout=None) as source:
            async for sse in source.aiter_sse():
                payload = json.loads(sse.data).get("payload") or {}
                if payload.get("type") == "server.connected":
                    connected.set()
                events.put_nowait(payload)

    try:
        assert child.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while b"opencode server listening on" not in await child.proc.stdout.readline():
            if time.monotonic() > deadline or child.proc.returncode is not None:
                raise RuntimeError("opencode serve did not start")
        tasks.append(asyncio.create_task(drain()))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=TURN_TIMEOUT) as client:
            tasks.append(asyncio.create_task(listen(client)))
            await asyncio.wait_for(connected.wait(), 30)
            where = {"directory": str(ctx.workspace)}
            created = await client.post("/session", params=where, json={"permission": BYPASS_RULES})
            created.raise_for_status()
            session = created.json()["id"]

            def mine(payload: dict[str, Any]) -> bool:
                props = payload.get("properties") or {}
                ids = (props.get("sessionID"), (props.get("info") or {}).get("sessionID"),
                       (props.get("part") or {}).get("sessionID"))  # fmt: skip
                return session in ids

            async def turn(prompt: str) -> None:
                while not events.empty():  # late events of the turn before
                    events.get_nowait()
                body = {"parts": [{"type": "text", "text": prompt}], "agent": "build"}
                answer = await client.post(
                    f"/session/{session}/prompt_async", params=where, json=body
                )
                answer.raise_for_status()
                busy = False  # an idle counts once this turn's work was seen
                while True:
                    payload = await asyncio.wait_for(events.get(), TURN_TIMEOUT)
                    if not mine(payload):
                        continue
                    if payload.get("type") == "session.idle" and busy:
                        return
                    busy = busy or payload.get("type") in (
                        "message.updated",
                        "message.part.updated",
                    )

            return await timed_turns(ctx.prompts, ctx.turns, ctx.warmup, turn)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await child.stop()


async def amp_baseline(ctx: Context) -> Times:
    thread: list[str] = []

    async def turn(prompt: str) -> None:
        argv = [*ctx.command]
        if thread:
            argv += ["threads", "continue", thread[0]]
        argv += ["-x", "--stream-json", "--stream-json-input", "--stream-json-thinking",
                 "--no-archive-after-execute", "--dangerously-allow-all"]  # fmt: skip
        child = await Child.spawn(argv, ctx.workspace, ctx.env, ctx.log("amp"))
        try:
            message = {"role": "user", "content": [{"type": "text", "text": prompt}]}
            await child.write({"type": "user", "message": message})
            child.close_stdin()
            while True:
                line = await child.read()
                if not thread and line.get("session_id"):
                    thread.append(str(line["session_id"]))
                if line.get("type") == "result":
                    break
            # The turn is over here (our adapter ends it on this line); the exit is not timed.
            ctx.pause()
            await asyncio.wait_for(child.proc.wait(), TURN_TIMEOUT)
            ctx.resume()
        finally:
            await child.stop()

    return await timed_turns_paused(ctx, turn)


async def acp_claude_baseline(ctx: Context) -> Times:
    child = await Child.spawn(ctx.command, ctx.workspace, ctx.env, ctx.log("acp_claude"))

    def on_request(message: dict[str, Any]) -> dict[str, Any] | None:
        if message["method"] == "session/request_permission":  # bypass: it should not ask
            options = message["params"]["options"]
            chosen = next(o for o in options if o["kind"] == "allow_once")
            return {"outcome": {"outcome": "selected", "optionId": chosen["optionId"]}}
        return None

    try:
        rpc = Rpc(child, on_request)
        await rpc.request(
            "initialize",
            {"protocolVersion": 1,
             "clientCapabilities": {"fs": {"readTextFile": False, "writeTextFile": False},
                                    "terminal": False},
             "clientInfo": {"name": "bench", "version": "0.1"}},
        )  # fmt: skip
        new = await rpc.request("session/new", {"cwd": str(ctx.workspace), "mcpServers": []})
        session = new["sessionId"]
        await rpc.request("session/set_mode", {"sessionId": session, "modeId": "bypassPermissions"})

        async def turn(prompt: str) -> None:
            blocks = [{"type": "text", "text": prompt}]
            await rpc.request("session/prompt", {"sessionId": session, "prompt": blocks})

        return await timed_turns(ctx.prompts, ctx.turns, ctx.warmup, turn)
    finally:
        await child.stop()


async def timed_turns_paused(ctx: Context, turn: Callable[[str], Awaitable[None]]) -> Times:
    """``timed_turns`` minus the time a turn spent between ``ctx.pause()`` and ``ctx.resume()``."""
    times = await timed_turns(ctx.prompts, ctx.turns, ctx.warmup, turn)
    paused = iter(ctx.paused[ctx.warmup :])
    return {name: [t - next(paused) for t in values] for name, values in times.items()}


BASELINES: dict[str, Callable[[Context], Coroutine[Any, Any, Times]]] = {
    "claude": claude_baseline,
    "codex": codex_baseline,
    "opencode": opencode_baseline,
    "amp": amp_baseline,
    "acp:claude": acp_claude_baseline,
}


# -- through our server -------------------------------------------------------------------------


async def through_server(ctx: Context, port: int, pid: int) -> tuple[Times, dict[str, float]]:
    """The same turns through a session of our server; (times, server CPU ms per turn)."""
    body: dict[str, Any] = {"agent": ctx.agent, "directory": str(ctx.workspace)}
    if ctx.agent == "acp:claude":
        body["agentMode"] = "bypassPermissions"
    else:
        body["permissionMode"] = "bypass"
    conn = await Connection.open(port)
    session = "bench-" + ctx.agent.replace(":", "-")
    status, answer = await conn.request("POST", f"/v1/sessions/{session}", body)
    if status != 200:
        raise RuntimeError(f"create {session}: {status} {answer!r}")
    sse_conn, stream = await open_stream(port, session, await last_sequence(conn, session))
    cpu: dict[str, float] = {}

    async def turn(prompt: str) -> None:
        await post_message(conn, session, prompt)
        await asyncio.wait_for(until_turn_ended_ok(stream), TURN_TIMEOUT)

    for _ in range(ctx.warmup):
        await turn(PROMPTS["plain"])
    times: Times = {}
    for name in ctx.prompts:
        before = cpu_seconds(pid)
        times |= await timed_turns([name], ctx.turns, 0, turn)
        cpu[name] = (cpu_seconds(pid) - before) / ctx.turns * 1000
    conn.close()
    sse_conn.close()
    return times, cpu


async def until_turn_ended_ok(stream: AsyncIterator[tuple[float, dict[str, Any]]]) -> None:
    async for _, event in stream:
        if event["type"] == "turn.ended":
            if event["data"].get("reason") != "completed":
                raise RuntimeError(f"the turn did not complete: {event}")
            return
    raise RuntimeError("the SSE stream ended before turn.ended")


# -- one agent ----------------------------------------------------------------------------------


class Context:
    """What a run of one agent needs: its command, environment, workspace and counts."""

    def __init__(
        self, agent: str, command: list[str], root: Path, env: dict[str, str], args: Any
    ) -> None:
        self.agent = agent
        self.command = command
        self.root = root
        self.env = env
        self.workspace = root / "ws"
        self.prompts: list[str] = args.prompts
        self.turns: int = args.turns
        self.warmup: int = args.warmup
        self.paused: list[float] = []
        self._paused_at = 0.0

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def pause(self) -> None:
        self._paused_at = time.perf_counter()

    def resume(self) -> None:
        self.paused.append(time.perf_counter() - self._paused_at)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def backend(agent: str, root: Path) -> Iterator[dict[str, str]]:
    """The fake LLM (the fake Amp server for amp) and the offline environment against it."""
    tmpdir = root / "tmp"  # codex sets up no sandbox helper under $TMPDIR
    tmpdir.mkdir(parents=True)
    if agent == "amp":
        with FakeAmp() as amp:
            quiet_resets(amp.server)
            home = root / "home"
            home.mkdir()
            yield {"HOME": str(home), "AMP_URL": amp.url, "AMP_API_KEY": AMP_KEY,
                   "AMP_SKIP_UPDATE_CHECK": "1", "NO_COLOR": "1", "TMPDIR": str(tmpdir),
                   "SANDBOX_AGENT_AGENTS_DIR": str(AGENTS_DIR)}  # fmt: skip
        return
    with FakeLLM() as llm:
        quiet_resets(llm.server)
        prepare_workspace(root / "ws", llm.url)
        env = offline_env(llm.url, root / "home")
        env["ENABLE_TOOL_SEARCH"] = "false"
        env["TMPDIR"] = str(tmpdir)
        yield env


def quiet_resets(server: Any) -> None:
    """No traceback when a CLI we stop resets its connection to the fake backend."""
    report = server.handle_error

    def handle_error(request: Any, address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            report(request, address)

    server.handle_error = handle_error


def run_agent(agent: str, command: list[str], args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as directory:
        root = Path(directory)
        with backend(agent, root) as env:
            (root / "ws").mkdir(exist_ok=True)
            ctx = Context(agent, command, root, env, args)
            base_env = {k: v for k, v in os.environ.items() if k != "SANDBOX_AGENT_TOKEN"}
            ctx.env = {**base_env, **env}
            try:
                baseline = asyncio.run(BASELINES[agent](ctx))
            except Exception as exc:
                raise RuntimeError(f"{agent} baseline: {exc}\n{tails(root)}") from exc
            server_env = {**env, "SANDBOX_AGENT_DATA_DIR": str(root / "data")}
            server = ServerProcess(
                f"sqlite:///{root / 'store.db'}",
                root / "server.log",
                env=server_env,
                args=["--no-token", "--root", str(root)],  # the workspace lies inside the root
            )
            server.start(timeout=START_TIMEOUT)
            try:
                assert server.proc is not None
                ours, cpu = asyncio.run(through_server(ctx, server.port, server.proc.pid))
            except Exception as exc:
                raise RuntimeError(f"{agent} through the server: {exc}\n{tails(root)}") from exc
            finally:
                try:
                    server.stop(timeout=30)
                finally:
                    server.kill()
    return figures_of(baseline, ours, cpu)


def tails(root: Path) -> str:
    out = []
    for log in sorted(root.rglob("*.log")):
        text = log.read_text(errors="replace")[-1500:]
        if text.strip():
            out.append(f"--- {log.relative_to(root)}\n{text}")
    return "\n".join(out)


def figures_of(baseline: Times, ours: Times, cpu: dict[str, float]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in baseline:
        figures: dict[str, float] = {}
        for q, label in ((0.5, "p50"), (0.9, "p90")):
            b = percentile(baseline[name], q) * 1000
            o = percentile(ours[name], q) * 1000
            figures[f"baseline_{label}_ms"] = b
            figures[f"ours_{label}_ms"] = o
            figures[f"overhead_{label}_ms"] = o - b
            figures[f"ratio_{label}"] = o / b
        figures["server_cpu_ms_per_turn"] = cpu[name]
        figures["turns"] = len(baseline[name])
        result[name] = figures
    return result


# -- output -------------------------------------------------------------------------------------


def report(results: dict[str, Any], as_json: bool, load: tuple[float, float]) -> None:
    context = {
        "cpus": os.cpu_count(),
        "load_average_before": load[0],
        "load_average_after": load[1],
        "prompts": PROMPTS,
    }
    if as_json:
        json.dump({"agents": results, "context": context}, sys.stdout, indent=2)
        print()
        return
    table = Table(title="Turn time: the CLI alone vs through sandbox-agent server (ms)")
    for name in ("agent", "prompt", "CLI p50/p90", "ours p50/p90", "ours-CLI p50/p90",
                 "ours/CLI p50", "server CPU/turn"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("agent", "prompt") else "right")
    skipped = []
    for agent, figures in results.items():
        if "skipped" in figures:
            skipped.append(f"{agent} ({figures['skipped']})")
            continue
        for prompt, f in figures.items():
            table.add_row(
                agent, prompt,
                f"{f['baseline_p50_ms']:.0f} / {f['baseline_p90_ms']:.0f}",
                f"{f['ours_p50_ms']:.0f} / {f['ours_p90_ms']:.0f}",
                f"{f['overhead_p50_ms']:+.0f} / {f['overhead_p90_ms']:+.0f}",
                f"{f['ratio_p50']:.2f}",
                f"{f['server_cpu_ms_per_turn']:.1f}",
            )  # fmt: skip
    console = Console()
    console.print(table)
    if skipped:
        console.print("skipped: " + ", ".join(skipped))
    console.print(
        f"{context['cpus']} CPUs, load average {load[0]:.1f} before, {load[1]:.1f} after "
        "(anything else running moves these figures)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated agent ids")
    parser.add_argument("--prompts", default="plain,tool", help="comma-separated: plain, tool")
    parser.add_argument("--turns", type=int, default=10, help="measured turns per prompt")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured plain turns first")
    parser.add_argument("--quick", action="store_true", help="2 turns a prompt: a smoke test")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    agents = [a for a in args.agents.split(",") if a]
    args.prompts = [p for p in args.prompts.split(",") if p]
    unknown = [a for a in agents if a not in AGENTS] + [p for p in args.prompts if p not in PROMPTS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    if args.quick:
        args.turns = 2
    before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    for agent in agents:
        command = command_of(agent, AGENTS_DIR)
        if command is None:
            results[agent] = {
                "skipped": f"not installed (run: sandbox-agent install-agent {agent})"
            }
            continue
        results[agent] = run_agent(agent, command, args)
    report(results, args.json, (before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
