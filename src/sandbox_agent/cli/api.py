"""``sandbox-agent api ...``: v0.1-style client commands against a running server (httpx)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import httpx

from sandbox_agent.cli.app import app, fail, print_json

DEFAULT_ENDPOINT = "http://127.0.0.1:2468"

api_app = typer.Typer(help="Talk to a running server (v0.1 API).", no_args_is_help=True)
agents_app = typer.Typer(help="Agents of the server.", no_args_is_help=True)
sessions_app = typer.Typer(help="Sessions of the server.", no_args_is_help=True)
api_app.add_typer(agents_app, name="agents")
api_app.add_typer(sessions_app, name="sessions")
app.add_typer(api_app, name="api")

Endpoint = Annotated[
    str, typer.Option("-e", "--endpoint", envvar="SANDBOX_AGENT_ENDPOINT", help="Server URL.")
]
Token = Annotated[
    str | None, typer.Option("-t", "--token", envvar="SANDBOX_AGENT_TOKEN", help="Bearer token.")
]


#: Seconds a request may take; an agent install downloads up to about 500 MB.
REQUEST_TIMEOUT = 60.0
INSTALL_TIMEOUT = 900.0


def _client(endpoint: str, token: str | None, timeout: float = REQUEST_TIMEOUT) -> httpx.Client:
    import httpx  # here, not at the top: the server command must not pay for it

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=endpoint, headers=headers, timeout=timeout)


def call(
    endpoint: str,
    token: str | None,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = REQUEST_TIMEOUT,
    **params: Any,
) -> Any:
    """One request; prints nothing. Exits 1 with the problem's detail on an error status."""
    import httpx

    try:
        with _client(endpoint, token, timeout) as client:
            response = client.request(
                method,
                path,
                json=body,
                params={k: v for k, v in params.items() if v is not None},
            )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {endpoint}: {exc}")
    if response.status_code >= 400:
        try:
            problem = response.json()
            sys.stderr.write(json.dumps(problem, indent=2) + "\n")
            fail(str(problem.get("detail", response.status_code)))
        except ValueError:
            fail(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.json() if response.content else None


def _stream(
    endpoint: str, token: str | None, method: str, path: str, body: Any = None, **params: Any
) -> None:
    import httpx

    try:
        with (
            _client(endpoint, token) as client,
            client.stream(
                method,
                path,
                json=body,
                params={k: v for k, v in params.items() if v is not None},
                timeout=httpx.Timeout(60, read=None),
            ) as response,
        ):
            if response.status_code >= 400:
                response.read()
                fail(response.text)
            for line in response.iter_lines():
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
    except httpx.HTTPError as exc:
        fail(f"stream from {endpoint} failed: {exc}")
    except KeyboardInterrupt:
        pass


def _show(value: Any) -> None:
    if value is not None:
        print_json(value)


# -- agents ---------------------------------------------------------------------------------
@agents_app.command("list")
def agents_list(endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    _show(call(endpoint, token, "GET", "/v1/agents"))


@agents_app.command("install")
def agents_install(
    agent: str,
    reinstall: Annotated[bool, typer.Option("-r", "--reinstall")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    call(
        endpoint,
        token,
        "POST",
        f"/v1/agents/{agent}/install",
        {"reinstall": reinstall},
        timeout=INSTALL_TIMEOUT,
    )


@agents_app.command("modes")
def agents_modes(agent: str, endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    _show(call(endpoint, token, "GET", f"/v1/agents/{agent}/modes"))


@agents_app.command("models")
def agents_models(agent: str, endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    _show(call(endpoint, token, "GET", f"/v1/agents/{agent}/models"))


# -- sessions -------------------------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    _show(call(endpoint, token, "GET", "/v1/sessions"))


@sessions_app.command("get")
def sessions_get(
    session_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None
) -> None:
    _show(call(endpoint, token, "GET", f"/v1/sessions/{session_id}"))


@sessions_app.command("create")
def sessions_create(
    session_id: str,
    agent: Annotated[str, typer.Option("-a", "--agent")],
    agent_mode: Annotated[str | None, typer.Option("-g", "--agent-mode")] = None,
    permission_mode: Annotated[str | None, typer.Option("-p", "--permission-mode")] = None,
    model: Annotated[str | None, typer.Option("-m", "--model")] = None,
    variant: Annotated[str | None, typer.Option("-v", "--variant")] = None,
    directory: Annotated[str | None, typer.Option("--directory")] = None,
    title: Annotated[str | None, typer.Option("--title")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    body = {
        "agent": agent,
        "agentMode": agent_mode,
        "permissionMode": permission_mode,
        "model": model,
        "variant": variant,
        "directory": directory,
        "title": title,
    }
    body = {k: v for k, v in body.items() if v is not None}
    _show(call(endpoint, token, "POST", f"/v1/sessions/{session_id}", body))


@sessions_app.command("send-message")
def send_message(
    session_id: str,
    message: Annotated[str, typer.Option("-m", "--message")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    call(endpoint, token, "POST", f"/v1/sessions/{session_id}/messages", {"message": message})


@sessions_app.command("send-message-stream")
def send_message_stream(
    session_id: str,
    message: Annotated[str, typer.Option("-m", "--message")],
    include_raw: Annotated[bool, typer.Option("--include-raw")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    path = f"/v1/sessions/{session_id}/messages/stream"
    _stream(endpoint, token, "POST", path, {"message": message}, include_raw=include_raw or None)


@sessions_app.command("events")
def events(
    session_id: str,
    offset: Annotated[int | None, typer.Option("-o", "--offset")] = None,
    limit: Annotated[int | None, typer.Option("-l", "--limit")] = None,
    include_raw: Annotated[bool, typer.Option("--include-raw")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    path = f"/v1/sessions/{session_id}/events"
    raw = include_raw or None
    _show(call(endpoint, token, "GET", path, offset=offset, limit=limit, include_raw=raw))


@sessions_app.command("events-sse")
def events_sse(
    session_id: str,
    offset: Annotated[int | None, typer.Option("-o", "--offset")] = None,
    include_raw: Annotated[bool, typer.Option("--include-raw")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    path = f"/v1/sessions/{session_id}/events/sse"
    _stream(endpoint, token, "GET", path, offset=offset, include_raw=include_raw or None)


@sessions_app.command("reply-permission")
def reply_permission(
    session_id: str,
    permission_id: str,
    reply: Annotated[str, typer.Option("-r", "--reply", help="once, always or reject")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    path = f"/v1/sessions/{session_id}/permissions/{permission_id}/reply"
    call(endpoint, token, "POST", path, {"reply": reply.lower()})


@sessions_app.command("reply-question")
def reply_question(
    session_id: str,
    question_id: str,
    answers: Annotated[str, typer.Option("-a", "--answers", help="JSON, e.g. '[[\"Yes\"]]'")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    token: Token = None,
) -> None:
    try:
        parsed = json.loads(answers)
    except ValueError as exc:
        fail(f"--answers is not JSON: {exc}")
    path = f"/v1/sessions/{session_id}/questions/{question_id}/reply"
    call(endpoint, token, "POST", path, {"answers": parsed})


@sessions_app.command("reject-question")
def reject_question(
    session_id: str, question_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None
) -> None:
    call(endpoint, token, "POST", f"/v1/sessions/{session_id}/questions/{question_id}/reject")


@sessions_app.command("cancel")
def cancel(session_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    call(endpoint, token, "POST", f"/v1/sessions/{session_id}/cancel")


@sessions_app.command("terminate")
def terminate(session_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    call(endpoint, token, "POST", f"/v1/sessions/{session_id}/terminate")


@sessions_app.command("delete")
def delete(session_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT, token: Token = None) -> None:
    call(endpoint, token, "DELETE", f"/v1/sessions/{session_id}")
