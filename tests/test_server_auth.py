"""Token auth, CORS and the bind rule of a real server process."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox_agent.testing.server import ServerProcess, running

TOKEN = "s3cret-token"
ORIGIN = "http://example.com"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("auth")
    args = ["--token", TOKEN, "-O", ORIGIN, "-M", "GET", "-M", "POST"]
    args += ["-A", "content-type", "-A", "authorization"]
    with running(f"sqlite:///{tmp / 's.db'}", tmp / "log", args=args) as server:
        yield server


def test_health_and_banner_are_public(guarded: ServerProcess) -> None:
    assert httpx.get(f"{guarded.url}/v1/health").json() == {"status": "ok"}
    assert httpx.get(f"{guarded.url}/").status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic !!!", f"Digest {TOKEN}"])
def test_missing_or_wrong_token_is_401_problem(guarded: ServerProcess, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{guarded.url}/v1/sessions", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:sandbox-agent:error:token_invalid"
    assert body["details"] == {"message": "missing or invalid token"}


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"Token {TOKEN}",
        "Basic " + base64.b64encode(f"user:{TOKEN}".encode()).decode(),
        "Basic " + base64.b64encode(TOKEN.encode()).decode().rstrip("="),
    ],
)
def test_every_v01_token_form_is_accepted(guarded: ServerProcess, header: str) -> None:
    response = httpx.get(f"{guarded.url}/v1/sessions", headers={"Authorization": header})
    assert response.status_code == 200, response.text


def test_unknown_routes_are_guarded_too(guarded: ServerProcess) -> None:
    assert httpx.get(f"{guarded.url}/v1/nothing").status_code == 401
    authed = httpx.get(f"{guarded.url}/v1/nothing", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authed.status_code == 404


def test_cors_preflight_is_answered_before_auth(guarded: ServerProcess) -> None:
    preflight = httpx.options(
        f"{guarded.url}/v1/agents",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    actual = httpx.get(
        f"{guarded.url}/v1/agents", headers={"Origin": ORIGIN, "Authorization": f"Bearer {TOKEN}"}
    )
    assert actual.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.get(f"{guarded.url}/v1/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_without_an_allowed_origin_there_is_no_cors(tmp_path: Path) -> None:
    # No -O: nothing to allow, so no CORS middleware; a preflight is an ordinary request to a
    # route without OPTIONS, refused as problem+json.
    with running(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "log") as server:
        preflight = httpx.options(
            f"{server.url}/v1/agents",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 405
        assert preflight.headers["content-type"].startswith("application/problem+json")
        assert "access-control-allow-origin" not in preflight.headers
        plain = httpx.get(f"{server.url}/v1/health", headers={"Origin": ORIGIN})
        assert plain.status_code == 200
        assert "access-control-allow-origin" not in plain.headers


def test_no_token_off_loopback_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_agent", "server", "-H", "0.0.0.0", "-p", "1",
         "--store", f"sqlite:///{tmp_path / 's.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in __import__("os").environ.items() if k != "SANDBOX_AGENT_TOKEN"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "--no-token" in result.stderr
