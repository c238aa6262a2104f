"""Answers to the agent's permission requests and questions."""

from __future__ import annotations

from fastapi import APIRouter, Response

from sandbox_agent.api import PermissionReplyRequest, QuestionReplyRequest
from sandbox_agent.server.responses import problems
from sandbox_agent.server.routes.deps import Engine, RequestId, SessionId

router = APIRouter(prefix="/v1/sessions", tags=["hitl"])


@router.post(
    "/{session_id}/permissions/{permission_id}/reply", status_code=204, responses=problems(404)
)
async def reply_permission(
    session_id: SessionId, permission_id: RequestId, body: PermissionReplyRequest, engine: Engine
) -> Response:
    """Answer ``once``, ``always`` or ``reject``; recorded once the agent accepted it."""
    await (await engine.get(session_id)).reply_permission(permission_id, body.reply)
    return Response(status_code=204)


@router.post(
    "/{session_id}/questions/{question_id}/reply", status_code=204, responses=problems(404)
)
async def reply_question(
    session_id: SessionId, question_id: RequestId, body: QuestionReplyRequest, engine: Engine
) -> Response:
    """Answer with one list of chosen labels per question."""
    await (await engine.get(session_id)).reply_question(question_id, body.answers)
    return Response(status_code=204)


@router.post(
    "/{session_id}/questions/{question_id}/reject", status_code=204, responses=problems(404)
)
async def reject_question(
    session_id: SessionId, question_id: RequestId, engine: Engine
) -> Response:
    await (await engine.get(session_id)).reply_question(question_id, None)
    return Response(status_code=204)
