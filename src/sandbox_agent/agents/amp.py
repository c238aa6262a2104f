"""The Amp adapter (agent id ``amp``): one ``amp`` CLI process per turn, stream-json out.

Amp runs its agent loop on Amp's own server (``AMP_URL``, key ``AMP_API_KEY``, both from the
server's environment or its credentials); the CLI holds the thread's socket and runs the tools.
Each turn is one process, in its own process group, in the session's directory::

    amp [threads continue <thread id>] -x --stream-json --stream-json-input
        --stream-json-thinking --no-archive-after-execute [--dangerously-allow-all]

Why this shape (rather than one long process fed by ``--stream-json-input``): a turn process
exits by itself once the turn ended, and cancel is simply killing the turn's process group (the
CLI then tells the server ``client_cancel``); the next turn continues the thread in a new
process. The prompt goes in as one stdin message (then stdin is closed), not as an argument, so
that any text works (a leading ``-``, any size) and images go along as base64 blocks.
``--no-archive-after-execute``: execute mode otherwise archives the thread after each turn.

Native session id: the thread id (``T-<uuid>``) from the ``session_id`` of the first line
(upstream bug 7: never captured, so ``--continue`` was never used); later turns, and the first
turn after a server restart (``start(resume=<thread id>)``), run ``amp threads continue``.

The mapping of the stream-json lines, and what is deliberately ignored, is in ``amp_mapping``.

Permissions: Amp cannot ask by program in execute mode; it applies its permission rules (the
user's or workspace ``amp.permissions`` settings) itself and reports a refusal as a tool result
(``Tool rejected by ...``, mapped as a failed ``tool_result``). Permission mode ``bypass`` adds
``--dangerously-allow-all`` (runs even what a rule refuses); ``default`` keeps the rules. So no
permission or question is ever pending: ``reply_*`` raise ``UnknownRequest``.

Errors: a ``result`` with ``is_error`` -> ``error`` + ``turn.ended {error}``. A turn process that
ends without a ``result`` -> ``error`` (code ``process_exit``, stderr tail in ``details``) +
``turn.ended {error}``; the session stays usable (the next turn is a new process), so no
``session.ended`` is emitted. Cancel: kill the turn's process group; nothing more is emitted for
the turn (the CLI's "User cancelled" result is dropped); the session layer writes
``turn.ended {cancelled}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sandbox_agent.agents.amp_mapping import AmpStreamMapper
from sandbox_agent.agents.base import (
    AgentModels,
    AgentSessionConfig,
    Attachment,
    EventSink,
    PermissionReply,
)
from sandbox_agent.agents.catalog import CAPABILITIES, models_of
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.agents.errors import AgentError, TurnInProgress, UnknownRequest
from sandbox_agent.agents.native import NativeAgent
from sandbox_agent.agents.process import AgentProcess
from sandbox_agent.agents.settings import AgentSettings
from sandbox_agent.events import ErrorData, EventDraft, PermissionData

logger = logging.getLogger(__name__)

AMP_CAPABILITIES = CAPABILITIES["amp"]

#: Image types sent as image blocks; other attachments are named in the prompt's text.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: Seconds a finished turn's process may take to exit before the next turn kills it.
EXIT_GRACE_SECONDS = 10.0


@dataclass
class _Turn:
    process: AgentProcess
    task: asyncio.Task[None] | None = None
    #: Set by cancel/stop: nothing more is emitted for this turn.
    cancelled: bool = False
    #: The result line came (the agent ended the turn).
    ended: bool = False


class AmpAgent(NativeAgent):
    """One session's Amp thread; one ``amp`` process per turn."""

    id = "amp"
    capabilities = AMP_CAPABILITIES
    MODELS: ClassVar[AgentModels] = models_of("amp")

    def __init__(self, sink: EventSink, settings: AgentSettings) -> None:
        super().__init__(sink, settings)
        self._mapper = AmpStreamMapper()
        self._turn: _Turn | None = None
        self._lock = asyncio.Lock()
        self._stopped = False

    async def models(self) -> AgentModels:
        return self.MODELS

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, session: AgentSessionConfig, resume: str | None = None) -> None:
        self._begin(session)
        self.command()  # AgentNotInstalled now rather than at the first prompt
        if not self.environment().get("AMP_API_KEY"):
            # Without a key the CLI waits for an interactive login for ever.
            raise AgentError("amp needs AMP_API_KEY in the server's environment")
        self.native_session_id = resume
        self._mapper = AmpStreamMapper(resume)

    def argv(self) -> list[str]:
        """The command line of the next turn."""
        argv = self.command()
        if self.native_session_id:
            argv += ["threads", "continue", self.native_session_id]
        argv += [
            "-x", "--stream-json", "--stream-json-input", "--stream-json-thinking",
            "--no-archive-after-execute",
        ]  # fmt: skip
        if self.session.permission_mode == "bypass":
            argv.append("--dangerously-allow-all")
        return argv

    def turn_environment(self) -> dict[str, str]:
        env = self.environment()
        # The CLI is a pinned version: it must not update itself.
        env.setdefault("AMP_SKIP_UPDATE_CHECK", "1")
        return env

    async def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> None:
        async with self._lock:
            if self._stopped:
                raise AgentError("amp: the adapter was stopped")
            previous = self._turn
            if previous is not None and not previous.ended and not previous.cancelled:
                raise TurnInProgress("amp: a turn is running")
            if previous is not None:
                await self._finish(previous)
            message = await asyncio.to_thread(self.user_message, prompt, attachments)
            process = await AgentProcess.spawn(
                self.argv(),
                cwd=self.directory,
                env=self.turn_environment(),
                log_path=self.log_path(),
            )
            turn = self._turn = _Turn(process)
            self._mapper.begin_turn()
            try:
                await process.write_json(message)
            except (ConnectionError, OSError):
                self._turn = None  # it never started
                await process.stop()
                raise
            finally:
                process.close_stdin()
            turn.task = asyncio.create_task(self._read(turn), name=f"amp-turn-{process.pid}")

    def user_message(self, prompt: str, attachments: Sequence[Attachment]) -> dict[str, Any]:
        """The stdin line of a prompt: its text, then image blocks; other files are named."""
        content: list[dict[str, Any]] = []
        others: list[str] = []
        for attachment in attachments:
            block = self._image_block(attachment)
            if block is None:
                others.append(attachment.path)
            else:
                content.append(block)
        text = prompt
        if others:
            text += "\n\nAttached files:\n" + "\n".join(f"- {path}" for path in others)
        content.insert(0, {"type": "text", "text": text})
        return {"type": "user", "message": {"role": "user", "content": content}}

    def _image_block(self, attachment: Attachment) -> dict[str, Any] | None:
        if attachment.mime not in IMAGE_TYPES:
            return None
        path = Path(attachment.path)
        if not path.is_absolute():
            path = Path(self.directory) / path
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": attachment.mime,
                "data": base64.b64encode(data).decode(),
            },
        }

    async def _read(self, turn: _Turn) -> None:
        """Map the turn's stdout until it closes; end the turn if the process did not."""
        try:
            async for line in turn.process.lines():
                if turn.cancelled:
                    continue  # drain: the CLI still prints its "User cancelled" result
                drafts = self._mapper.map_line(line)
                self._note_native_id()
                if self._mapper.turn_ended:
                    turn.ended = True
                await self.emit(*drafts)
            code = await turn.process.wait()
            if turn.cancelled or turn.ended:
                return
            turn.ended = True
            tail = turn.process.stderr_tail()
            error = ErrorData(
                message=f"amp exited with code {code} before the turn ended",
                code="process_exit",
                details={"exit_code": code, "stderr_tail": tail},
            )
            await self.emit(
                EventDraft(
                    type="error",
                    data=error,
                    source="daemon",
                    synthetic=True,
                    native_session_id=self.native_session_id,
                ),
                turn_ended_draft("error"),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # The sink failed (store trouble): stop the CLI rather than leave it blocked on a
            # full pipe; the turn stays open for the session layer to end.
            logger.exception("amp: reading the turn's output failed")
            turn.ended = True
            await turn.process.stop()

    def _note_native_id(self) -> None:
        thread = self._mapper.native_session_id
        if thread and thread != self.native_session_id:
            self.native_session_id = thread

    async def _finish(self, turn: _Turn) -> None:
        """Wait for an ended turn's process to exit (kill it after a grace period)."""
        if turn.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(turn.task), EXIT_GRACE_SECONDS)
            except TimeoutError:
                turn.cancelled = True
                await turn.process.stop()
                await turn.task
        await turn.process.stop(grace=1.0)

    async def cancel(self) -> None:
        turn = self._turn
        if turn is None or turn.ended or turn.cancelled:
            return
        turn.cancelled = True
        await self._kill(turn)

    async def _kill(self, turn: _Turn) -> None:
        await turn.process.stop()
        if turn.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await turn.task

    async def stop(self) -> None:
        self._stopped = True
        turn = self._turn
        if turn is None:
            return
        turn.cancelled = True
        await self._kill(turn)

    # -- HITL: Amp cannot ask in execute mode ---------------------------------------------------
    async def forward_permission(self, request: PermissionData, reply: PermissionReply) -> None:
        raise UnknownRequest("permission", request.permission_id)
