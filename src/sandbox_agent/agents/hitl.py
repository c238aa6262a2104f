"""Human-in-the-loop helpers shared by adapters: recording answers, remembering ``always``.

An adapter keeps the ``PermissionData`` / ``QuestionData`` of each request it emitted, forwards
the client's answer to its agent, and then emits the draft built here (source ``client``). An
``always`` answer is remembered in ``AlwaysRules``; a later request that matches is answered by
the adapter at once and recorded as a synthetic ``accept_for_session`` (source ``daemon``).
"""

from __future__ import annotations

import re
from typing import Any

from sandbox_agent.agents.base import PermissionReply
from sandbox_agent.events import EventDraft, PermissionData, QuestionData

PERMISSION_STATUS: dict[str, str] = {
    "once": "accept",
    "always": "accept_for_session",
    "reject": "reject",
}

# Tools that ask the user a question through a permission request (Claude): never auto-approved,
# since answering them needs the user's words, not a yes.
QUESTION_TOOLS = frozenset(
    {
        "askuserquestion",
        "ask_user_question",
        "ask-user-question",
        "exitplanmode",
        "exit_plan_mode",
        "exit-plan-mode",
    }
)

_KEY_FIELDS = ("permission", "codexRequestKind", "toolName", "tool_name")
_CATEGORY = re.compile(r"[A-Za-z0-9_.-]+")


def permission_resolved(
    request: PermissionData, reply: PermissionReply, *, automatic: bool = False
) -> EventDraft:
    """The ``permission.resolved`` draft of ``request`` answered with ``reply``.

    ``automatic`` marks an answer the daemon gave from an ``always`` rule (source ``daemon``,
    synthetic); otherwise the answer is the client's.
    """
    if reply not in PERMISSION_STATUS:
        raise ValueError(f"permission reply must be once, always or reject, not {reply!r}")
    data = request.model_copy(update={"status": PERMISSION_STATUS[reply]})
    return EventDraft(
        type="permission.resolved",
        data=data,
        source="daemon" if automatic else "client",
        synthetic=automatic,
    )


def question_resolved(request: QuestionData, answers: list[list[str]] | None) -> EventDraft:
    """The ``question.resolved`` draft: answered with ``answers``, or rejected when None.

    ``response`` is the first label of the first answer (v0.1), None when there is none.
    """
    if answers is None:
        data = request.model_copy(update={"status": "rejected", "response": None})
    else:
        first = answers[0][0] if answers and answers[0] else None
        data = request.model_copy(update={"status": "answered", "response": first})
    return EventDraft(type="question.resolved", data=data, source="client")


class AlwaysRules:
    """The ``always`` answers of one session.

    A request is described by keys: its action and the metadata fields ``permission``,
    ``codexRequestKind``, ``toolName``/``tool_name``, each also as a lower-cased category (the
    first word, cut at ``:``). A request sharing any key with one answered ``always`` matches.
    """

    def __init__(self) -> None:
        self._keys: set[str] = set()

    def remember(self, request: PermissionData) -> None:
        if not _is_question_tool(request):
            self._keys |= _keys(request)

    def matches(self, request: PermissionData) -> bool:
        return not _is_question_tool(request) and not self._keys.isdisjoint(_keys(request))


def _is_question_tool(request: PermissionData) -> bool:
    return request.action.lower() in QUESTION_TOOLS


def _keys(request: PermissionData) -> set[str]:
    metadata: dict[str, Any] = request.metadata or {}
    values = [request.action, *(metadata.get(field) for field in _KEY_FIELDS)]
    keys: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value.strip():
            continue
        keys.add(value)
        category = value.split()[0].split(":", 1)[0].lower()
        if _CATEGORY.fullmatch(category):
            keys.add(f"category:{category}")
    return keys
