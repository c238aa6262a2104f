"""The error answers of the OpenAPI document: every error is ``application/problem+json``.

Routes declare the statuses only they can answer (``problems(404, 409)``);
``document_problems`` adds those every route shares (400 for a bad parameter or body, 401 with
a token, 413 for a body over the limit, 500 and 503) and drops FastAPI's 422, which this server
never answers (validation errors are 400 ``invalid_request``).
"""

from __future__ import annotations

from typing import Any

from sandbox_agent.api import Problem
from sandbox_agent.server.errors import PROBLEM_JSON

#: Each status, with the problem names (``urn:sandbox-agent:error:<name>``) it stands for.
DESCRIPTIONS = {
    400: "invalid_request (validation, a bad value, a terminated session), unsupported_agent, "
    "mode_not_supported, path_outside_root",
    401: "token_invalid: a token is required and missing or wrong",
    404: "session_not_found, agent_not_installed, acp_server_not_found, permission_not_found, "
    "question_not_found, not_found",
    409: "conflict (/v1/acp: another agent), session_already_exists, turn_in_progress, "
    "queue_full, sequence_conflict, "
    "session_owned (--shared-store: another server holds the session's lease)",
    406: "not_acceptable: the Accept header allows nothing the route answers with (/v1/acp)",
    413: "payload_too_large: the body is over --max-body-bytes",
    415: "unsupported_media_type: a body that is not application/json (/v1/acp)",
    500: "agent_process_exited, agent_error, install_failed, internal_error",
    504: "timeout: the ACP agent did not answer a request in time (/v1/acp)",
    503: "store_unavailable (with Retry-After): the store cannot be reached (its connection, "
    "the network or the disk failed); store_error: the event store failed",
}
_SCHEMA_REF = {"$ref": "#/components/schemas/Problem"}
_BODY_METHODS = frozenset({"post", "put", "patch", "delete"})
_PUBLIC = frozenset({("get", "/v1/health")})


def _answer(status: int) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[status], "content": {PROBLEM_JSON: {"schema": _SCHEMA_REF}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that can answer these error statuses."""
    return {status: _answer(status) for status in statuses}


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's OpenAPI dict) with the shared error answers; changed in place."""
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            answers: dict[str, Any] = operation.setdefault("responses", {})
            answers.pop("422", None)
            shared: list[int] = []
            if operation.get("parameters") or operation.get("requestBody"):
                shared.append(400)
            if (method, path) not in _PUBLIC:
                shared += [401, 500, 503]
            if method in _BODY_METHODS:
                shared.append(413)
            for code in shared:
                answers.setdefault(str(code), _answer(code))
            for status, answer in answers.items():
                if status.startswith(("4", "5")):  # problem+json, never application/json
                    answer["content"] = {PROBLEM_JSON: {"schema": _SCHEMA_REF}}
            operation["responses"] = dict(sorted(answers.items()))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = Problem.model_json_schema()
    return document
