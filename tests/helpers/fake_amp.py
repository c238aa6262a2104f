"""A fake Amp server (stdlib only) that drives the real ``amp`` CLI offline in tests.

Amp runs its agent loop on Amp's own server; the CLI only holds the thread's WebSocket and runs
tools. So, unlike ``fake_llm.py``, this fakes that server's private API, as learned for
``@ampcode/cli`` 0.0.1790142911-g7618fb (``shared/reference/agents/amp/README.md`` section 3):

* ``POST /api/internal?<method>`` with ``{"method", "params"}`` -> ``{"ok": true, "result"}``:
  getUserInfo, loadPlugins, loadSkills, getThreadTail, getThreadMessagesPage, getThreadProject,
  listThreads, archiveThread (recorded only: the thread stays usable); anything else -> ``{}``.
* ``POST /api/thread-actors``: create (or re-credential, ``{threadId}``) a thread.
* ``POST /api/telemetry`` -> ``{}``.
* ``GET /actors/gateway/threadActor/websocket/?...&rvt-key=<thread id>``: the thread's WebSocket
  (RFC 6455, no extensions), JSON-RPC 2.0 text frames, ``"ping"`` answered ``"pong"``. The CLI
  opens two per thread: the executor (runs tools) and an observer.

The scripted "model", chosen from the text of each user message:

* ``CMD<<cmd>>``: an assistant message with a ``shell_command`` tool_use; the executor (the CLI)
  really runs it, and after its result the answer is ``Tool result received: <result JSON>``;
* ``RUN_ECHO``: the same with ``echo hi``; ``THINK`` adds a thinking block;
* ``SLOW``: ``Working on it slowly.`` at once, then the answer after ``SLOW_SECONDS`` (a
  minute), or never once the CLI sent ``client_cancel`` or went away (cancel tests);
* anything else: ``Hello from fake Amp. The thread has N message(s).`` (N shows history).

In tests: ``with FakeAmp() as amp: amp.url`` (a free port on 127.0.0.1, served from a thread;
``amp.requests`` holds every HTTP request and WebSocket frame, secrets redacted;
``amp.threads`` the threads). By hand: ``python tests/helpers/fake_amp.py --port 8766``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hashlib
import json
import os
import queue
import random
import re
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SECRET_HEADERS = {"authorization", "x-api-key", "cookie", "proxy-authorization"}
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: How long a SLOW answer takes (cancel tests kill the CLI long before).
SLOW_SECONDS = 60.0
#: Seconds the fake waits for a tool result from the executor.
TOOL_TIMEOUT = 60.0
WS_MAGIC = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

USER = {
    "id": "user_fake",
    "email": "fake@example.com",
    "emailVerified": True,
    "username": "fake",
    "displayName": "Fake User",
    "features": [],
    # A team is needed for --visibility workspace (amp-sdk's default).
    "team": {
        "id": "team_fake",
        "name": "Fake Workspace",
        "groups": [],
        "billingMode": "individual",
    },
}


def rid(prefix: str, n: int = 22) -> str:
    return prefix + "".join(random.choice(ALNUM) for _ in range(n))


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class WebSocket:
    """The server side of one RFC 6455 connection (text frames, no extensions)."""

    def __init__(self, rfile: Any, wfile: Any, cid: int) -> None:
        self.r, self.w, self.cid = rfile, wfile, cid
        self.lock = threading.Lock()

    def recv(self) -> bytes:
        """The payload of the next complete data message; ``ConnectionError`` at the end."""
        buf = b""
        while True:
            head = self.r.read(2)
            if len(head) < 2:
                raise ConnectionError("eof")
            fin, op, masked, n = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.r.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.r.read(8))[0]
            mask = self.r.read(4) if masked else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.r.read(n)))
            if op == 9:  # ping
                self.send(data, 10)
                continue
            if op == 10:  # pong
                continue
            if op == 8:  # close
                with contextlib.suppress(OSError):
                    self.send(data[:2], 8)
                raise ConnectionError("closed by client")
            buf += data
            if fin:
                return buf

    def send(self, data: str | bytes, op: int = 1) -> None:
        payload = data.encode() if isinstance(data, str) else data
        n = len(payload)
        if n < 126:
            length = bytes([n])
        elif n < 65536:
            length = bytes([126]) + struct.pack(">H", n)
        else:
            length = bytes([127]) + struct.pack(">Q", n)
        with self.lock:
            self.w.write(bytes([0x80 | op]) + length + payload)
            self.w.flush()


class ThreadSocket:
    """One client socket of a thread: JSON-RPC requests in, notifications out."""

    def __init__(self, fake: FakeAmp, ws: WebSocket, thread_id: str) -> None:
        self.fake, self.ws, self.thread_id = fake, ws, thread_id
        self.is_executor = False
        self.thread = fake.thread(thread_id, "medium")

    def notify(self, method: str, **params: Any) -> None:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        self.fake.log({"c": self.ws.cid, "ws_out": message})
        self.ws.send(json.dumps(message))

    def reply(self, message: dict[str, Any]) -> None:
        if "id" in message:
            answer = {"jsonrpc": "2.0", "id": message["id"], "result": {}}
            self.fake.log({"c": self.ws.cid, "ws_out": answer})
            self.ws.send(json.dumps(answer))

    def run(self) -> None:
        self.fake.attach(self)
        try:
            # An observer only becomes ready once it got a first frame.
            self.notify("thread_title", title=self.thread.get("title"))
            self.notify("agent_state", state="idle")
            self.notify("queued_messages", messages=[])
            while True:
                text = self.ws.recv().decode("utf-8", "replace")
                if text == "ping":
                    self.ws.send("pong")
                    continue
                try:
                    message = json.loads(text)
                except ValueError:
                    self.fake.log({"c": self.ws.cid, "ws_in_raw": text[:2000]})
                    continue
                self.fake.log({"c": self.ws.cid, "ws_in": message})
                if isinstance(message, dict):
                    self.handle(message)
        finally:
            self.fake.detach(self)

    def handle(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params") or {}
        fake = self.fake
        if method == "executor_connect":
            self.is_executor = True
            self.reply(message)
            self.notify(
                "executor_connected",
                executorId=params.get("clientId"),
                registeredToolCount=0,
                guidanceInventory=[],
            )
            return
        if method == "executor_tools_register":
            self.thread["tools"] = sorted(t.get("name") for t in params.get("tools", []))
        if method == "client_append_user_msg":
            self.reply(message)
            fake.queue_turn(self, params)
            return
        if method == "client_cancel":  # the CLI was told to stop (SIGINT/SIGTERM)
            self.reply(message)
            fake.cancelled.add(self.thread_id)
            return
        if method == "executor_tool_result":
            self.reply(message)
            self.notify("executor_tool_result_ack", toolCallId=params.get("toolCallId"))
            # Resumed executors may send the same result twice: the first one counts.
            waiter = fake.tool_waits.get(params.get("toolCallId"))
            if waiter is not None and waiter["result"] is None:
                waiter["result"] = params
                waiter["event"].set()
            return
        self.reply(message)


class FakeAmp:
    """The fake Amp server on a free port of 127.0.0.1, served from a thread while in a ``with``.

    ``state_path`` keeps the threads in a JSON file (so a new fake continues them)."""

    def __init__(self, state_path: str | None = None, log_path: str | None = None) -> None:
        self.state_path = state_path
        self.log_path = log_path
        self.lock = threading.RLock()
        self.threads: dict[str, dict[str, Any]] = {}
        self.sockets: dict[str, list[ThreadSocket]] = {}
        self.turns: dict[str, dict[str, Any]] = {}
        self.tool_waits: dict[str, dict[str, Any]] = {}
        #: Threads whose client sent client_cancel while a turn ran.
        self.cancelled: set[str] = set()
        self._requests: list[dict[str, Any]] = []
        self._ws_count = 0
        if state_path and os.path.exists(state_path):
            with open(state_path) as f:
                self.threads.update(json.load(f))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAmp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- records ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._requests)

    def log(self, entry: dict[str, Any]) -> None:
        entry["ts"] = time.time()
        with self.lock:
            self._requests.append(entry)
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")

    def messages(self, thread_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.threads[thread_id]["messages"])

    def save(self) -> None:
        if not self.state_path:
            return
        with self.lock:
            tmp = self.state_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.threads, f)
            os.replace(tmp, self.state_path)

    # -- threads ---------------------------------------------------------------------------
    def thread(self, thread_id: str, agent_mode: str) -> dict[str, Any]:
        with self.lock:
            if thread_id not in self.threads:
                self.threads[thread_id] = {
                    "id": thread_id,
                    "v": 0,
                    "created": int(time.time() * 1000),
                    "messages": [],
                    "agentMode": agent_mode,
                    "title": None,
                    "seq": 0,
                }
            return self.threads[thread_id]

    def summary(self, t: dict[str, Any]) -> dict[str, Any]:
        return {"id": t["id"], "title": t.get("title"), "updatedAt": iso_now(),
                "creatorUserID": USER["id"]}  # fmt: skip

    def thread_data(self, t: dict[str, Any]) -> dict[str, Any]:
        data = {"id": t["id"], "v": t["v"], "created": t["created"], "messages": [],
                "agentMode": t["agentMode"], "meta": {"usesThreadActors": True}}  # fmt: skip
        if t.get("title"):
            data["title"] = t["title"]
        return data

    def internal(self, method: str | None, params: dict[str, Any]) -> dict[str, Any]:
        if method == "getUserInfo":
            return {"ok": True, "result": USER}
        if method == "loadPlugins":
            return {"ok": True, "result": []}
        if method == "loadSkills":
            return {"ok": True, "result": {"sources": []}}
        if method in ("getThreadTail", "getThreadMessagesPage", "getThreadProject"):
            with self.lock:
                t = self.threads.get(params.get("thread", ""))
                if t is None:
                    error = {"code": "thread-not-found", "message": "Thread not found"}
                    return {"ok": False, "error": error}
                msgs = list(t["messages"])
            if method == "getThreadProject":
                return {"ok": True, "result": {"project": None}}
            if method == "getThreadMessagesPage":
                i, n = params.get("fromIndex", 0), params.get("limit", 200)
                nxt = i + n if i + n < len(msgs) else None
                return {
                    "ok": True,
                    "result": {"messages": msgs[i : i + n], "nextMessageIndex": nxt},
                }
            n = params.get("limit", 200)
            result = {"thread": self.summary(t) | {"data": self.thread_data(t)},
                      "messages": msgs[-n:], "hasMoreBefore": len(msgs) > n}  # fmt: skip
            return {"ok": True, "result": result}
        if method == "listThreads":
            with self.lock:
                threads = [
                    self.summary(t)
                    | {"userLastInteractedAt": iso_now(), "messageCount": len(t["messages"])}
                    for t in self.threads.values()
                ]
            return {"ok": True, "result": {"threads": threads}}
        if method == "archiveThread":
            with self.lock:
                t = self.threads.get(params.get("thread", ""))
                if t is not None:
                    t["archive_calls"] = t.get("archive_calls", 0) + 1
        return {"ok": True, "result": {}}

    # -- sockets ---------------------------------------------------------------------------
    def next_ws(self) -> int:
        with self.lock:
            self._ws_count += 1
            return self._ws_count

    def attach(self, sock: ThreadSocket) -> None:
        with self.lock:
            self.sockets.setdefault(sock.thread_id, []).append(sock)

    def detach(self, sock: ThreadSocket) -> None:
        with self.lock:
            self.sockets.get(sock.thread_id, []).remove(sock)

    def peers(self, thread_id: str) -> list[ThreadSocket]:
        with self.lock:
            return list(self.sockets.get(thread_id, []))

    def broadcast(self, thread_id: str, method: str, **params: Any) -> None:
        for sock in self.peers(thread_id):
            with contextlib.suppress(OSError):
                sock.notify(method, **params)

    def executor(self, thread_id: str) -> ThreadSocket | None:
        return next((s for s in self.peers(thread_id) if s.is_executor), None)

    def add_message(self, thread_id: str, message: dict[str, Any]) -> None:
        with self.lock:
            t = self.threads[thread_id]
            message.setdefault("threadId", thread_id)
            message.setdefault("createdAt", iso_now())
            t["messages"].append(message)
            t["v"] += 1
            t["seq"] += 1
            seq = t["seq"]
        self.broadcast(thread_id, "message_added", message=message, seq=seq)
        self.save()

    # -- the scripted agent ------------------------------------------------------------------
    def queue_turn(self, sock: ThreadSocket, params: dict[str, Any]) -> None:
        """Turns of one thread run one after another; "idle" only once none is left."""
        with self.lock:
            st = self.turns.setdefault(
                sock.thread_id, {"q": queue.Queue(), "pending": 0, "worker": None}
            )
            st["pending"] += 1
            st["q"].put(params)
            if st["worker"] is None:
                st["worker"] = threading.Thread(
                    target=self._turn_worker, args=(sock.thread_id, st), daemon=True
                )
                st["worker"].start()

    def _turn_worker(self, thread_id: str, st: dict[str, Any]) -> None:
        while True:
            params = st["q"].get()
            try:
                self.agent_turn(thread_id, params)
            except Exception as exc:
                self.log({"agent_error": repr(exc)})
            finally:
                with self.lock:
                    st["pending"] -= 1
                    last = st["pending"] == 0
                if last:
                    self.broadcast(thread_id, "agent_state", state="idle")

    def assistant(self, thread_id: str, content: list[dict[str, Any]]) -> str:
        mid = rid("M-")
        mode = self.threads[thread_id]["agentMode"]
        # Assistant messages count for the CLI's turn only after an active agent_state names them.
        self.broadcast(thread_id, "agent_state", state="streaming", messageId=mid, agentMode=mode)
        usage = {"model": "fake-model", "maxInputTokens": 200000, "inputTokens": 10,
                 "outputTokens": 5, "cacheCreationInputTokens": None,
                 "cacheReadInputTokens": None, "totalInputTokens": 10}  # fmt: skip
        self.add_message(thread_id, {"role": "assistant", "messageId": mid, "content": content,
                                     "state": {"type": "complete"}, "usage": usage})  # fmt: skip
        return mid

    def agent_turn(self, thread_id: str, p: dict[str, Any]) -> None:
        t = self.threads[thread_id]
        user = {
            "role": "user",
            "messageId": p.get("messageId") or rid("M-"),
            "content": p.get("content", []),
            "agentMode": p.get("agentMode", t["agentMode"]),
        }
        if p.get("userState"):
            user["userState"] = p["userState"]
        self.add_message(thread_id, user)
        if t.get("tools"):  # the model-visible tool list of this inference
            self.broadcast(thread_id, "inference_tools", messageId=user["messageId"],
                           agentMode=user["agentMode"], tools=t["tools"])  # fmt: skip
        if t.get("title") is None:
            t["title"] = "Fake thread"
            self.broadcast(thread_id, "thread_title", title="Fake thread")
        text = " ".join(b.get("text", "") for b in user["content"] if b.get("type") == "text")
        found = re.search(r"CMD<<(.*?)>>", text, re.S)
        cmd = found.group(1) if found else ("echo hi" if "RUN_ECHO" in text else None)
        think = []
        if "THINK" in text:
            think = [{"type": "thinking", "thinking": "The user wants a greeting.",
                      "signature": "fake-sig"}]  # fmt: skip
        if cmd is not None:
            self.tool_turn(thread_id, cmd)
            return
        if "SLOW" in text and not self.slow_wait(thread_id):
            return  # the client went away: no answer (the CLI was killed)
        n = len(t["messages"])
        hello = f"Hello from fake Amp. The thread has {n} message(s)."
        self.assistant(thread_id, [*think, {"type": "text", "text": hello}])

    def slow_wait(self, thread_id: str) -> bool:
        """Say so, then wait ``SLOW_SECONDS``; False once the client cancelled or went away."""
        with self.lock:
            self.cancelled.discard(thread_id)
        self.assistant(thread_id, [{"type": "text", "text": "Working on it slowly."}])
        mid = rid("M-")
        self.broadcast(thread_id, "agent_state", state="streaming", messageId=mid)
        deadline = time.monotonic() + SLOW_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with self.lock:
                cancelled = thread_id in self.cancelled
            if cancelled or not self.peers(thread_id):
                self.log({"slow_turn": "abandoned", "thread": thread_id})
                return False
        return True

    def tool_turn(self, thread_id: str, cmd: str) -> None:
        tcid = rid("TU-")
        tool_use = {"type": "tool_use", "id": tcid, "name": "shell_command", "complete": True,
                    "input": {"command": cmd}}  # fmt: skip
        mid = self.assistant(thread_id, [{"type": "text", "text": "Running a command."}, tool_use])
        self.broadcast(thread_id, "agent_state", state="running_tools", messageId=mid)
        executor = self.executor(thread_id)
        if executor is None:
            raise RuntimeError("no executor connected")
        waiter: dict[str, Any] = {"event": threading.Event(), "result": None}
        self.tool_waits[tcid] = waiter
        executor.notify("tool_lease", toolCallId=tcid, toolName="shell_command",
                        args={"command": cmd}, messageId=mid)  # fmt: skip
        if not waiter["event"].wait(TOOL_TIMEOUT):
            raise RuntimeError("tool result timeout")
        run = waiter["result"]["run"]
        self.add_message(thread_id, {"role": "user", "messageId": rid("M-"), "content": [
            {"type": "tool_result", "toolUseID": tcid, "run": run}]})  # fmt: skip
        out = json.dumps(run.get("result"))[:300]
        self.assistant(thread_id, [{"type": "text", "text": f"Tool result received: {out}"}])


def _handler_for(fake: FakeAmp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _headers(self) -> dict[str, str]:
            return {
                k: (f"<redacted:{len(v)}>" if k.lower() in SECRET_HEADERS else v)
                for k, v in self.headers.items()
            }

        def _body(self) -> Any:
            n = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(n) if n else b""
            if self.headers.get("content-encoding") == "gzip" and raw:
                raw = gzip.decompress(raw)
            try:
                return json.loads(raw)
            except ValueError:
                return raw.decode("utf-8", "replace")

        def _send(self, status: int, obj: Any) -> Any:
            out = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return obj

        def _any(self) -> None:
            if self.headers.get("upgrade", "").lower() == "websocket":
                self._websocket()
                return
            body = self._body()
            params = body if isinstance(body, dict) else {}
            path = self.path.split("?")[0]
            if path == "/api/internal":
                method = self.path.split("?", 1)[1] if "?" in self.path else params.get("method")
                resp = self._send(200, fake.internal(method, params.get("params") or {}))
            elif path == "/api/thread-actors" and self.command == "POST":
                tid = params.get("threadId") or f"T-{uuid.uuid4()}"
                mode = params.get("agentMode", "medium")
                fake.thread(tid, mode)
                resp = self._send(200, {
                    "threadId": tid, "wsToken": f"wstok_{tid}", "usesDtw": True,
                    "usesThreadActors": True, "executorType": "local-client",
                    "ownerUserId": USER["id"], "threadVersion": 1, "agentMode": mode,
                    "poolName": "fakepool", "capability": "execute",
                })  # fmt: skip
            elif path == "/api/telemetry":
                resp = self._send(200, {})
            else:
                resp = self._send(404, {"error": "not found (fake_amp)"})
            fake.log({"method": self.command, "path": self.path, "headers": self._headers(),
                      "body": body, "resp": resp})  # fmt: skip

        def _websocket(self) -> None:
            key = self.headers["sec-websocket-key"]
            digest = hashlib.sha1((key + WS_MAGIC).encode()).digest()
            protocols = [
                p.strip()
                for p in self.headers.get("sec-websocket-protocol", "").split(",")
                if p.strip()
            ]
            conn_params = None
            for p in protocols:
                if p.startswith("rivet_conn_params."):
                    conn_params = json.loads(unquote(p[len("rivet_conn_params.") :]))
                    if "wsToken" in conn_params:
                        conn_params["wsToken"] = "<redacted>"
            fake.log({"method": "WS", "path": self.path, "headers": self._headers(),
                      "conn_params": conn_params})  # fmt: skip
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", base64.b64encode(digest).decode())
            if "rivet" in protocols:
                self.send_header("Sec-WebSocket-Protocol", "rivet")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            ws = WebSocket(self.rfile, self.wfile, fake.next_ws())
            thread_id = (parse_qs(urlsplit(self.path).query).get("rvt-key") or [""])[0]
            fake.log({"c": ws.cid, "ws": "open", "key": thread_id})
            try:
                ThreadSocket(fake, ws, thread_id).run()
            except OSError as exc:  # ConnectionError included
                fake.log({"c": ws.cid, "ws": "closed", "err": repr(exc)})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--log", default=None, help="append every request to this JSONL file")
    ap.add_argument("--state", default=None, help="JSON file keeping threads across restarts")
    a = ap.parse_args()
    fake = FakeAmp(state_path=a.state, log_path=a.log)
    fake.server.server_close()
    fake.server = ThreadingHTTPServer(("127.0.0.1", a.port), _handler_for(fake))
    fake.server.daemon_threads = True
    print(f"fake-amp listening on http://127.0.0.1:{a.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake.server.serve_forever()


if __name__ == "__main__":
    main()
