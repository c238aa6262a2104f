"""Errors on the wire: ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: Every problem's ``type`` is this prefix and the error's short name.
TYPE_PREFIX = "urn:sandbox-agent:error:"
PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457): ``type`` is
    ``urn:sandbox-agent:error:<name>``; extensions (``sessionId``, ``agent``, ``details``, ...)
    depend on the error."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
