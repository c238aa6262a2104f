"""Errors of the SDK: ``SandboxAgentError`` carries the HTTP status and the problem details."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox_agent.api.problems import TYPE_PREFIX


class SandboxAgentError(Exception):
    """The server answered with an error (``status``, parsed ``problem+json`` in ``problem``),
    or the SDK could not do what was asked (``status`` is then the closest HTTP status).

    ``body`` is the answer's text when it was not a JSON object (a proxy's error page, say);
    ``problem`` then holds its reason phrase and its start."""

    def __init__(self, status: int, problem: dict[str, Any], body: str | None = None) -> None:
        self.status = status
        self.problem = problem
        self.body = body
        super().__init__(f"{status} {self.name}: {self.detail}")

    @property
    def name(self) -> str:
        """The problem's short type name, e.g. ``session_not_found``."""
        return str(self.problem.get("type", "")).removeprefix(TYPE_PREFIX) or "error"

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or self.problem.get("title") or "")

    @classmethod
    def from_response(cls, response: httpx.Response) -> SandboxAgentError:
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            detail = {"title": response.reason_phrase, "detail": response.text[:500]}
            return cls(response.status_code, detail, body=response.text)
        return cls(response.status_code, problem)

    @classmethod
    def of(cls, name: str, status: int, detail: str, **extensions: Any) -> SandboxAgentError:
        """An error raised by the SDK itself, shaped like the server's problems."""
        title = " ".join(word.capitalize() for word in name.split("_"))
        problem = {"type": TYPE_PREFIX + name, "title": title, "status": status, "detail": detail}
        return cls(status, {**problem, **extensions})


class MirrorConflict(SandboxAgentError):
    """Another writer changed the local copy of a session that this SDK mirrors (a second
    mirror of the same session, e.g. another replica that restored it): nothing was written."""

    def __init__(self, session_id: str, detail: str) -> None:
        title = "Mirror Conflict"
        super().__init__(
            409,
            {
                "type": TYPE_PREFIX + "mirror_conflict",
                "title": title,
                "status": 409,
                "detail": detail,
                "sessionId": session_id,
            },
        )
        self.session_id = session_id
