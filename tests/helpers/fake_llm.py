"""Scripted fake LLM HTTP server (stdlib only), standing in for the internet in agent tests.

Implements just enough of
  * Anthropic Messages API      POST /v1/messages (stream + non-stream), /v1/messages/count_tokens
  * OpenAI Responses API        POST /v1/responses (stream + non-stream)
  * OpenAI Chat Completions     POST /v1/chat/completions (stream + non-stream)
  * model listing               GET  /v1/models, /models
to drive coding-agent CLIs offline.  Every request is appended to a JSONL log
(secrets redacted) so we learn what each client sends.

Replies are chosen statelessly from the *last* user input of each request:
  * last input is a tool result             -> final text "Tool result received: <output>"
  * user text contains CMD<<some command>>   -> call the shell tool with that command
  * user text contains RUN_ECHO              -> call the shell tool with `echo hi`
  * user text also contains ESCALATE         -> (codex exec_command) asks to leave the sandbox
  * user text contains SLOW                  -> text streamed one word per 0.5 s (about 60 s;
                                               cancel tests interrupt it)
  * anything else                            -> plain text "Hello from fake LLM ..."
A tool call is only emitted when the request declares a suitable shell tool,
so side requests (titles, summaries, ...) always get plain text.

In tests: ``with FakeLLM() as llm: llm.url`` (a free port on 127.0.0.1; ``llm.requests`` holds
every request). By hand: ``python tests/helpers/fake_llm.py --port 8765 --log requests.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SECRET_HEADERS = {"authorization", "x-api-key", "cookie", "proxy-authorization", "api-key"}
LOG_LOCK = threading.Lock()
LOG_PATH = None
COUNTER = {"n": 0}


REQUESTS: list = []


def log(entry):
    with LOG_LOCK:
        REQUESTS.append(entry)
    if not LOG_PATH:
        return
    with LOG_LOCK, open(LOG_PATH, "a") as f:
        f.write(json.dumps(entry) + "\n")


def next_id(prefix):
    COUNTER["n"] += 1
    return f"{prefix}_{COUNTER['n']:04d}{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------------------------
# scenario logic (shared by all wire formats)
# ----------------------------------------------------------------------------------------------
SHELL_TOOL_NAMES = [
    "Bash",
    "bash",
    "shell",
    "exec_command",
    "shell_command",
    "local_shell",
    "run_shell_command",
]


ESCALATE = threading.local()
SLOW_WORDS = 120
SLOW_DELAY = 0.5


def choose(user_text, after_tool, tool_output, n_messages):
    """Return ("text", str) or ("tool", command)."""
    ESCALATE.on = "ESCALATE" in (user_text or "")
    if after_tool:
        out = (tool_output or "").strip().replace("\n", " | ")[:200]
        return ("text", f"Tool result received: {out}")
    m = re.search(r"CMD<<(.*?)>>", user_text or "", re.S)
    if m:
        return ("tool", m.group(1))
    if "RUN_ECHO" in (user_text or ""):
        return ("tool", "echo hi")
    if "SLOW" in (user_text or ""):
        return ("text", " ".join(f"slow{i}" for i in range(SLOW_WORDS)))
    return ("text", f"Hello from fake LLM. I saw {n_messages} input message(s).")


def build_args(schema, name, command):
    """Build arguments for a shell-like tool from its JSON schema."""
    props = (schema or {}).get("properties", {}) or {}
    args = {}
    for key, spec in props.items():
        typ = spec.get("type") if isinstance(spec, dict) else None
        if key in ("command", "cmd"):
            if typ == "array":
                args[key] = ["bash", "-lc", command]
            else:
                args[key] = command
        elif key == "description":
            args[key] = "Run a shell command (fake LLM)"
        elif key == "sandbox_permissions" and getattr(ESCALATE, "on", False):
            # codex: ask to run outside the sandbox -> approval request under on-request policy
            args[key] = "require_escalated"
            args["justification"] = "The fake LLM wants to run this command outside the sandbox."
    if not args:
        args = {"command": command}
    return args


def _pace(text):
    if text.startswith("slow0 "):
        time.sleep(SLOW_DELAY)


# ----------------------------------------------------------------------------------------------
# HTTP plumbing
# ----------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm/0.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def handle(self):
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    # -- helpers -------------------------------------------------------------------------------
    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = b""
        if n:
            raw = self.rfile.read(n)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        enc = self.headers.get("Content-Encoding", "")
        if enc in ("gzip", "zstd", "br", "deflate") and raw:
            try:
                if enc == "gzip":
                    import gzip

                    raw = gzip.decompress(raw)
                elif enc == "deflate":
                    import zlib

                    raw = zlib.decompress(raw)
                elif enc == "zstd":
                    try:
                        import zstandard  # optional

                        raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 28)
                    except ImportError:
                        pass
            except Exception:
                pass
        return raw

    def _log_request(self, raw):
        try:
            body = json.loads(raw) if raw else None
        except Exception:
            body = raw[:4000].decode("utf-8", "replace")
        headers = {
            k: ("<redacted>" if k.lower() in SECRET_HEADERS else v) for k, v in self.headers.items()
        }
        log(
            {
                "ts": time.time(),
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": body,
            }
        )
        return body

    def _json(self, code, obj, extra_headers=None):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:12])
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:12])
        self.send_header("x-request-id", "req_fake_" + uuid.uuid4().hex[:12])
        self.end_headers()

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sse(self, event, obj):
        s = ""
        if event:
            s += f"event: {event}\n"
        s += "data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n"
        self._chunk(s.encode())

    def _sse_end(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- dispatch ------------------------------------------------------------------------------
    def do_HEAD(self):
        self._log_request(b"")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self._log_request(b"")
        path = urlsplit(self.path).path.rstrip("/")
        if path.endswith("/models"):
            models = [
                {
                    "id": "fake-model",
                    "object": "model",
                    "created": 0,
                    "owned_by": "fake",
                    "type": "model",
                    "display_name": "Fake Model",
                    "created_at": "2025-01-01T00:00:00Z",
                }
            ]
            return self._json(
                200,
                {
                    "object": "list",
                    "data": models,
                    "models": models,
                    "has_more": False,
                    "first_id": "fake-model",
                    "last_id": "fake-model",
                },
            )
        return self._json(
            404, {"error": {"type": "not_found", "message": f"fake-llm: no GET {path}"}}
        )

    def do_POST(self):
        raw = self._read_body()
        body = self._log_request(raw) or {}
        path = urlsplit(self.path).path.rstrip("/")
        try:
            if path.endswith("/messages/count_tokens"):
                return self._json(200, {"input_tokens": max(1, len(raw) // 4)})
            if path.endswith("/messages"):
                return self.anthropic_messages(body)
            if path.endswith("/responses"):
                return self.openai_responses(body)
            if path.endswith("/chat/completions"):
                return self.openai_chat(body)
        except (BrokenPipeError, ConnectionResetError):
            return
        return self._json(
            404, {"error": {"type": "not_found", "message": f"fake-llm: no POST {path}"}}
        )

    # ------------------------------------------------------------------------------------------
    # Anthropic Messages
    # ------------------------------------------------------------------------------------------
    def anthropic_messages(self, body):
        msgs = body.get("messages") or []
        tools = {t.get("name"): t for t in (body.get("tools") or []) if isinstance(t, dict)}
        # Claude Code may append role "system" messages after the user turn: skip them.
        conv = [m for m in msgs if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
        last = conv[-1] if conv else {}
        if last.get("role") != "user":
            last = {}
        content = last.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        after_tool, tool_out = False, ""
        texts = []
        for b in blocks:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "tool_result":
                after_tool = True
                c = b.get("content")
                if isinstance(c, list):
                    tool_out += " ".join(x.get("text", "") for x in c if isinstance(x, dict))
                else:
                    tool_out += str(c or "")
            elif b.get("type") == "text":
                texts.append(b.get("text", ""))
        kind, payload = choose("\n".join(texts), after_tool, tool_out, len(msgs))
        tool_name = next((n for n in SHELL_TOOL_NAMES if n in tools), None)
        if kind == "tool" and not tool_name:
            kind, payload = "text", f"(fake LLM: no shell tool offered; would have run: {payload})"
        model = body.get("model", "fake-model")
        msg_id = next_id("msg")
        usage = {
            "input_tokens": 100,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if kind == "text":
            content_blocks = [{"type": "text", "text": payload}]
            stop = "end_turn"
        else:
            args = build_args(tools[tool_name].get("input_schema"), tool_name, payload)
            content_blocks = [
                {"type": "text", "text": "I'll run a command."},
                {"type": "tool_use", "id": next_id("toolu"), "name": tool_name, "input": args},
            ]
            stop = "tool_use"
        if not body.get("stream"):
            return self._json(
                200,
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content_blocks,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": dict(usage, output_tokens=20),
                },
            )
        self._sse_start()
        self._sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                },
            },
        )
        self._sse("ping", {"type": "ping"})
        for i, blk in enumerate(content_blocks):
            if blk["type"] == "text":
                self._sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                words = blk["text"].split(" ")
                for j, w in enumerate(words):
                    _pace(blk["text"])
                    self._sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": (w if j == 0 else " " + w)},
                        },
                    )
            else:
                self._sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {
                            "type": "tool_use",
                            "id": blk["id"],
                            "name": blk["name"],
                            "input": {},
                        },
                    },
                )
                js = json.dumps(blk["input"])
                half = len(js) // 2
                for part in (js[:half], js[half:]):
                    self._sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": part},
                        },
                    )
            self._sse("content_block_stop", {"type": "content_block_stop", "index": i})
        self._sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 20},
            },
        )
        self._sse("message_stop", {"type": "message_stop"})
        self._sse_end()

    # ------------------------------------------------------------------------------------------
    # OpenAI Responses
    # ------------------------------------------------------------------------------------------
    def openai_responses(self, body):
        items = body.get("input") or []
        if isinstance(items, str):
            items = [{"role": "user", "content": [{"type": "input_text", "text": items}]}]
        tools = {}
        for t in body.get("tools") or []:
            if isinstance(t, dict):
                nm = t.get("name") or (t.get("function") or {}).get("name") or t.get("type")
                tools[nm] = t
        last = items[-1] if items else {}
        after_tool = last.get("type") in (
            "function_call_output",
            "custom_tool_call_output",
            "local_shell_call_output",
        )
        tool_out = ""
        if after_tool:
            o = last.get("output")
            if isinstance(o, dict):
                o = o.get("content") or json.dumps(o)
            elif isinstance(o, list):
                o = " ".join(x.get("text", "") for x in o if isinstance(x, dict))
            tool_out = str(o)
        user_text = ""
        for it in reversed(items):
            if it.get("role") == "user":
                c = it.get("content")
                if isinstance(c, list):
                    user_text = "\n".join(x.get("text", "") for x in c if isinstance(x, dict))
                else:
                    user_text = str(c or "")
                break
        # only the *last* item decides: a user message must be last for a new tool call
        if not after_tool and last.get("role") != "user":
            user_text = ""
        kind, payload = choose(user_text, after_tool, tool_out, len(items))
        tool_name = next((n for n in SHELL_TOOL_NAMES if n in tools), None)
        if kind == "tool" and not tool_name:
            kind, payload = "text", f"(fake LLM: no shell tool offered; would have run: {payload})"
        model = body.get("model", "fake-model")
        resp_id = next_id("resp")
        out_items = []
        if kind == "text":
            out_items.append(
                {
                    "type": "message",
                    "id": next_id("msg"),
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": payload, "annotations": []}],
                }
            )
        else:
            t = tools[tool_name]
            schema = t.get("parameters") or (t.get("function") or {}).get("parameters")
            args = build_args(schema, tool_name, payload)
            out_items.append(
                {
                    "type": "function_call",
                    "id": next_id("fc"),
                    "call_id": next_id("call"),
                    "name": tool_name,
                    "arguments": json.dumps(args),
                    "status": "completed",
                }
            )
        usage = {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 20,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 120,
        }
        base = {"id": resp_id, "object": "response", "created_at": int(time.time()), "model": model}
        if not body.get("stream"):
            return self._json(200, dict(base, status="completed", output=out_items, usage=usage))
        self._sse_start()
        seq = [0]

        def ev(obj):
            obj["sequence_number"] = seq[0]
            seq[0] += 1
            self._sse(obj["type"], obj)

        ev({"type": "response.created", "response": dict(base, status="in_progress", output=[])})
        ev(
            {
                "type": "response.in_progress",
                "response": dict(base, status="in_progress", output=[]),
            }
        )
        for idx, item in enumerate(out_items):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                ev(
                    {
                        "type": "response.output_item.added",
                        "output_index": idx,
                        "item": dict(item, status="in_progress", content=[]),
                    }
                )
                ev(
                    {
                        "type": "response.content_part.added",
                        "item_id": item["id"],
                        "output_index": idx,
                        "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []},
                    }
                )
                for j, w in enumerate(text.split(" ")):
                    _pace(text)
                    ev(
                        {
                            "type": "response.output_text.delta",
                            "item_id": item["id"],
                            "output_index": idx,
                            "content_index": 0,
                            "delta": (w if j == 0 else " " + w),
                        }
                    )
                ev(
                    {
                        "type": "response.output_text.done",
                        "item_id": item["id"],
                        "output_index": idx,
                        "content_index": 0,
                        "text": text,
                    }
                )
                ev(
                    {
                        "type": "response.content_part.done",
                        "item_id": item["id"],
                        "output_index": idx,
                        "content_index": 0,
                        "part": item["content"][0],
                    }
                )
            else:
                ev(
                    {
                        "type": "response.output_item.added",
                        "output_index": idx,
                        "item": dict(item, arguments="", status="in_progress"),
                    }
                )
                ev(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": item["id"],
                        "output_index": idx,
                        "delta": item["arguments"],
                    }
                )
                ev(
                    {
                        "type": "response.function_call_arguments.done",
                        "item_id": item["id"],
                        "output_index": idx,
                        "arguments": item["arguments"],
                    }
                )
            ev({"type": "response.output_item.done", "output_index": idx, "item": item})
        ev(
            {
                "type": "response.completed",
                "response": dict(base, status="completed", output=out_items, usage=usage),
            }
        )
        self._sse_end()

    # ------------------------------------------------------------------------------------------
    # OpenAI Chat Completions
    # ------------------------------------------------------------------------------------------
    def openai_chat(self, body):
        msgs = body.get("messages") or []
        tools = {}
        for t in body.get("tools") or []:
            fn = (t or {}).get("function") or {}
            if fn.get("name"):
                tools[fn["name"]] = fn
        last = msgs[-1] if msgs else {}
        after_tool = last.get("role") == "tool"
        tool_out = ""
        if after_tool:
            c = last.get("content")
            tool_out = (
                " ".join(x.get("text", "") for x in c if isinstance(x, dict))
                if isinstance(c, list)
                else str(c)
            )
        user_text = ""
        if last.get("role") == "user":
            c = last.get("content")
            user_text = (
                "\n".join(x.get("text", "") for x in c if isinstance(x, dict))
                if isinstance(c, list)
                else str(c or "")
            )
        kind, payload = choose(user_text, after_tool, tool_out, len(msgs))
        tool_name = next((n for n in SHELL_TOOL_NAMES if n in tools), None)
        if kind == "tool" and not tool_name:
            kind, payload = "text", f"(fake LLM: no shell tool offered; would have run: {payload})"
        model = body.get("model", "fake-model")
        cid = next_id("chatcmpl")
        created = int(time.time())
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        tool_call = None
        if kind == "tool":
            args = build_args(tools[tool_name].get("parameters"), tool_name, payload)
            tool_call = {
                "id": next_id("call"),
                "type": "function",
                "function": {"name": tool_name, "arguments": json.dumps(args)},
            }
        if not body.get("stream"):
            msg = {"role": "assistant", "content": payload if kind == "text" else None}
            if tool_call:
                msg["tool_calls"] = [tool_call]
            return self._json(
                200,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": msg,
                            "finish_reason": "stop" if kind == "text" else "tool_calls",
                        }
                    ],
                    "usage": usage,
                },
            )
        self._sse_start()

        def chunk(delta, finish=None, **extra):
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            obj.update(extra)
            self._sse(None, obj)

        chunk({"role": "assistant", "content": ""})
        if kind == "text":
            for j, w in enumerate(payload.split(" ")):
                _pace(payload)
                chunk({"content": (w if j == 0 else " " + w)})
            chunk({}, "stop")
        else:
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": tool_call["id"],
                            "type": "function",
                            "function": {"name": tool_name, "arguments": ""},
                        }
                    ]
                }
            )
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "function": {"arguments": tool_call["function"]["arguments"]}}
                    ]
                }
            )
            chunk({}, "tool_calls")
        if (body.get("stream_options") or {}).get("include_usage"):
            self._sse(
                None,
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                },
            )
        self._sse(None, "[DONE]")
        self._sse_end()


def serve(port, log_path, host="127.0.0.1"):
    global LOG_PATH
    LOG_PATH = log_path
    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    return srv


class FakeLLM:
    """The fake LLM on a free port of 127.0.0.1, served from a thread while in a ``with``."""

    def __init__(self, log_path=None):
        self.server = serve(0, log_path)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self):
        with LOG_LOCK:
            return list(REQUESTS)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--log", default="requests.jsonl")
    a = ap.parse_args()
    srv = serve(a.port, a.log, a.host)
    print(
        f"fake-llm listening on http://{a.host}:{srv.server_address[1]} log={a.log}",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        srv.serve_forever()


if __name__ == "__main__":
    main()
