"""The session engine: finds, creates, recovers and removes ``LiveSession``s over one store.

Every session of the store can be served: active ones are loaded at start-up (``recover``),
others (ended ones) on first use. Sessions stay in memory once loaded; each holds a working
state and a bounded memory of items (``LiveSession``), so holding one costs the same whatever
the length of its history.

With ``leases`` (several servers sharing one store, ``store/leases.py``) the engine serves only
the sessions whose lease it holds: it takes a session's lease before it loads, creates or
recovers it (``SessionOwned`` while another live server holds it), renews its leases every
``heartbeat_seconds``, stops serving a session whose lease it lost, takes over active sessions
whose lease expired (a crashed or stopped server's: recovered here, once), and releases its
leases when it shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from sandbox_agent.agents import (
    AgentSettings,
    create_adapter,
    is_installed,
    parse_mcp_servers,
    resolve_agent,
)
from sandbox_agent.agents.catalog import models_of
from sandbox_agent.agents.install import InstallError, check_version
from sandbox_agent.agents.install import install as install_agent
from sandbox_agent.events import EventDraft, SessionStartedData
from sandbox_agent.paths import data_dir
from sandbox_agent.replay import SessionState
from sandbox_agent.sessions.acp_endpoint import is_acp_record
from sandbox_agent.sessions.config import SessionConfig, TurnLimits
from sandbox_agent.sessions.errors import AgentNotInstalled, InstallFailed
from sandbox_agent.sessions.fork import fork_stream
from sandbox_agent.sessions.paths import session_directory
from sandbox_agent.sessions.session import STATE_FOLDS, LiveSession
from sandbox_agent.sessions.skills import install_skills, parse_skill_sources, remove_links
from sandbox_agent.store import (
    EventStore,
    SessionExists,
    SessionLeases,
    SessionNotFound,
    SessionOwned,
    SessionRecord,
    StoreCorrupt,
    StoreError,
)
from sandbox_agent.store.errors import StoreUnavailable

logger = logging.getLogger(__name__)

#: Seconds a session's creation waits for the agent's live model list.
MODEL_LOOKUP_SECONDS = 10.0
#: Seconds ``check_store`` waits for the store to answer a read.
STORE_PROBE_SECONDS = 2.0
_PROBE_ID = "health-probe"


class SessionEngine:
    """All sessions of one server (or one embedding program), over one store."""

    def __init__(
        self,
        store: EventStore,
        *,
        settings: AgentSettings,
        root: str | None = None,
        snapshot_every: int = 1000,
        leases: SessionLeases | None = None,
        turn_limits: TurnLimits | None = None,
        state_folds: int = STATE_FOLDS,
    ) -> None:
        self.store = store
        self.settings = settings
        self.root = root
        self.snapshot_every = snapshot_every
        #: Every session's turn bounds: the idle timeout (off unless set), cancel's grace.
        self.turn_limits = turn_limits or TurnLimits()
        #: The leases of a server sharing the store with others (None: it owns the store).
        self.leases = leases
        self._keeper: asyncio.Task[None] | None = None
        self._sessions: dict[str, LiveSession] = {}
        #: Sessions whose stored stream is damaged: not served until the server restarts.
        self._failed: dict[str, StoreCorrupt] = {}
        self._loading = asyncio.Lock()
        self._installing = asyncio.Lock()
        #: Whole-state folds at once, shared by every session (``LiveSession.load``).
        self._folds = asyncio.Semaphore(state_folds)

    async def get(self, session_id: str) -> LiveSession:
        """The session, loaded from the store if needed; ``SessionNotFound`` if none. With
        leases: ``SessionOwned`` while another live server holds the session's lease; an
        active session taken over from a server that stopped or died is recovered first."""
        live = self._sessions.get(session_id)
        if live is not None:
            return live
        self.check_served(session_id)
        async with self._loading:
            live = self._sessions.get(session_id)
            if live is None:
                record = await self.store.get_session(session_id)
                if record is None:
                    raise SessionNotFound(session_id)
                if self.leases is None:
                    live = await self._load(record)
                else:
                    live = await self._adopt(record)
                    if live is None:
                        raise SessionNotFound(session_id)
                self._sessions[session_id] = live
            return live

    async def state_at(self, session_id: str, sequence: int | None = None) -> SessionState:
        """The whole state of a session after ``sequence`` (default: every event committed so
        far), folded from the store: ``state_folds`` at a time among every session's whole-state
        folds (its due snapshots included); the live session keeps only its working state."""
        live = await self.get(session_id)
        return await live.full_state(sequence)

    async def _adopt(self, record: SessionRecord) -> LiveSession | None:
        """Lease, load and (when active) recover a session: what a server sharing the store
        does with each session it takes up. None when it was an abandoned creation (deleted
        here). ``SessionOwned`` while another live server holds its lease."""
        assert self.leases is not None
        await self.leases.acquire(record.id)
        try:
            # Read again under the lease: the previous holder may have appended since.
            fresh = await self.store.get_session(record.id)
            if fresh is None or (fresh.status == "active" and fresh.last_sequence == 0):
                # Its creation never got as far as session.started: never acknowledged.
                if fresh is not None:
                    await self.store.delete_session(record.id)
                await self.leases.forget(record.id)
                return None
            live = await self._load(fresh)
            if fresh.status == "active":
                await live.recover()
            return live
        except BaseException:
            with contextlib.suppress(StoreError):
                await self.leases.release(record.id)
            raise

    def loaded(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    def failure(self, session_id: str) -> StoreCorrupt | None:
        """Why the session is not served (its stored stream is damaged), or None."""
        return self._failed.get(session_id)

    def check_served(self, session_id: str) -> None:
        """``StoreCorrupt`` for a session marked failed (``failure``); nothing otherwise."""
        failed = self._failed.get(session_id)
        if failed is not None:  # a new error each time: no traceback piles up on one
            raise StoreCorrupt(
                failed.session_id, failed.detail, sequence=failed.sequence, kind=failed.kind
            )

    async def _load(self, record: SessionRecord) -> LiveSession:
        """``LiveSession.load``; a damaged stream (``StoreCorrupt``) marks the session failed:
        every later use answers the same error, without reading the store again."""
        try:
            return await self._load_live(record)
        except StoreCorrupt as exc:
            if exc.session_id is None:
                exc.session_id = record.id
            self._failed[record.id] = exc
            logger.error("session %s: failed, not served: %s", record.id, exc)
            raise

    async def _load_live(self, record: SessionRecord) -> LiveSession:
        return await LiveSession.load(
            self.store,
            record,
            settings=self.settings,
            root=self.root,
            snapshot_every=self.snapshot_every,
            turn_limits=self.turn_limits,
            folds=self._folds,
        )

    async def create(self, session_id: str, config: SessionConfig) -> LiveSession:
        """Create the session, start its agent and record ``session.started``. Raises
        ``UnsupportedAgent``, ``InvalidMcpConfig``, ``InvalidAgentVersion``, ``PathOutsideRoot``
        (a ``directory`` outside the root), ``SessionExists``, ``AgentNotInstalled``,
        ``InstallFailed``, ``ModeNotSupported``, ``InvalidMode``, ``InvalidSessionRequest`` or
        ``SkillsError``; leaves nothing behind when it does (the skill links it made
        included). The session keeps its directory resolved."""
        spec = resolve_agent(config.agent, self.settings)
        agent = spec.id
        parse_mcp_servers(config.mcp)  # InvalidMcpConfig before anything is stored
        parse_skill_sources(config.skills)  # SkillsError(invalid_config) likewise
        if config.agent_version is not None:
            check_version(agent, config.agent_version)  # never a package spec for npm
        directory = await asyncio.to_thread(session_directory, config.directory, self.root)
        if await self.store.get_session(session_id) is not None:
            raise SessionExists(session_id)
        if not is_installed(agent, self.settings):
            if not self.settings.auto_install:
                raise AgentNotInstalled(agent)
            await self.install(agent, config.agent_version)
        agent_mode, permission_mode = spec.normalise_modes(
            config.agent_mode, config.permission_mode
        )
        model = config.model
        if model is None:
            model = await self._default_model(agent)
        skills, links = await asyncio.to_thread(
            install_skills,
            config.skills,
            directory or self.root or os.getcwd(),
            spec.skill_dirs,
            data_dir() / "skills-cache",
        )
        init = config.init()
        if skills:
            init["installedSkills"] = [skill.as_json() for skill in skills]
        try:
            return await self._create(
                session_id, config, agent, agent_mode, permission_mode, model, directory, init
            )
        except BaseException:
            await asyncio.to_thread(remove_links, links)
            raise

    async def _create(
        self,
        session_id: str,
        config: SessionConfig,
        agent: str,
        agent_mode: str,
        permission_mode: str,
        model: str | None,
        directory: str | None,
        init: dict[str, Any],
    ) -> LiveSession:
        record = SessionRecord(
            id=session_id,
            agent=agent,
            agent_mode=agent_mode,
            permission_mode=permission_mode,
            model=model,
            variant=config.variant,
            title=config.title,
            directory=directory,
            init=init,
        )
        async with self._loading:
            if self.leases is not None:
                await self.leases.acquire(session_id)  # before the row: no one recovers it
            try:
                record = await self.store.create_session(record)
            except BaseException:
                if self.leases is not None:
                    with contextlib.suppress(StoreError):
                        await self.leases.forget(session_id)
                raise
            live = await self._load(record)
            self._sessions[session_id] = live
        try:
            adapter = await live.ensure_adapter()
            metadata: dict[str, Any] = {
                "agent": agent,
                "agentMode": agent_mode,
                "permissionMode": permission_mode,
                "model": model,
                "variant": config.variant,
                "directory": directory,
                "title": config.title,
            }
            if "installedSkills" in init:
                metadata["skills"] = [
                    {key: skill[key] for key in ("name", "source", "path")}
                    for skill in init["installedSkills"]
                ]
            started = EventDraft(
                type="session.started",
                data=SessionStartedData(metadata=metadata),
                source="daemon",
                synthetic=True,
                native_session_id=adapter.native_session_id,
            )
            await live.append([started])
        except BaseException:
            self._sessions.pop(session_id, None)
            await live.close()
            await self.store.delete_session(session_id)
            if self.leases is not None:
                await self.leases.forget(session_id)
            raise
        return live

    async def fork(self, source_id: str, new_id: str, at: int | None = None) -> LiveSession:
        """Fork ``source_id`` at ``at`` (its end when None) into the new session ``new_id``
        (``fork.py``) and continue the fork at once: its agent starts, natively forked or
        afresh with the replay owed to its first prompt, and ``session.resumed {forked}``
        says which (``LiveSession.fork_resumed``). A live source may run a turn: the fork
        copies what is stored. Raises ``SessionNotFound``, ``SessionExists``,
        ``InvalidSessionRequest`` (``at`` < 1), ``SequencePastEnd``, ``AgentNotInstalled``,
        ``InstallFailed``, or what starting the agent raises; leaves no fork behind when it
        does."""
        self.check_served(source_id)
        source = self._sessions.get(source_id)
        if source is not None:
            await source.settled_state()  # the copy holds what the live state has seen
        record = await self.store.get_session(source_id)
        if record is None:
            raise SessionNotFound(source_id)
        if not is_installed(record.agent, self.settings):  # before anything is copied
            if not self.settings.auto_install:
                raise AgentNotInstalled(record.agent)
            await self.install(record.agent)
        async with self._loading:
            if self.leases is not None:
                await self.leases.acquire(new_id)  # before the row: no one recovers it
            try:
                record = await fork_stream(self.store, source_id, new_id, at)
            except BaseException:
                if self.leases is not None:
                    with contextlib.suppress(StoreError):
                        await self.leases.forget(new_id)
                raise
            live = await self._load(record)
            self._sessions[new_id] = live
        try:
            async with live.control:
                await live.ensure_adapter()
        except BaseException:
            self._sessions.pop(new_id, None)
            await live.close()
            await self.store.delete_session(new_id)
            if self.leases is not None:
                await self.leases.forget(new_id)
            raise
        return live

    async def delete(self, session_id: str) -> None:
        """Terminate the session if live, then remove it and its events (a failed session's
        too: deleting it is how its damage goes away)."""
        if self._failed.pop(session_id, None) is not None:
            await self.store.delete_session(session_id)
            return
        live = await self.get(session_id)
        await live.terminate()
        await live.close()
        self._sessions.pop(session_id, None)
        await self.store.delete_session(session_id)
        if self.leases is not None:
            await self.leases.forget(session_id)

    async def recover(self) -> list[str]:
        """Load every active session of the store and close what a previous server left open
        (see ``LiveSession.recover``). Returns the ids recovered. With leases, the heartbeat
        starts first and only sessions whose lease is free or expired are taken up."""
        if self.leases is not None:
            self._start_keeper()
        recovered: list[str] = []
        for record in await self.store.all_sessions("active"):
            if record.id in self._sessions or is_acp_record(record):
                continue  # an ACP server's stream: the ACP endpoint's (acp_endpoint.py)
            if self.leases is not None:
                try:
                    async with self._loading:
                        if record.id in self._sessions:
                            continue
                        live = await self._adopt(record)
                        if live is None:
                            continue
                        self._sessions[record.id] = live
                except SessionOwned:
                    continue  # another live server runs it
                except Exception:
                    logger.exception("session %s: recovery failed", record.id)
                    continue
                recovered.append(record.id)
                continue
            if record.last_sequence == 0:
                # Its creation never got as far as session.started: it was never acknowledged.
                await self.store.delete_session(record.id)
                continue
            try:
                live = await self._load(record)
                await live.recover()
            except Exception:
                logger.exception("session %s: recovery failed", record.id)
                continue
            self._sessions[record.id] = live
            recovered.append(record.id)
        return recovered

    async def _default_model(self, agent: str) -> str | None:
        """The agent's default model: a live lookup bounded by ``MODEL_LOOKUP_SECONDS``, else
        the catalog's; a failed lookup never fails the session."""
        probe = create_adapter(agent, _discard, self.settings)
        try:
            models = await asyncio.wait_for(probe.models(), MODEL_LOOKUP_SECONDS)
        except Exception:
            logger.warning("%s: model lookup failed; using the catalog's default", agent)
            models = models_of(agent)
        return models.default_model or models_of(agent).default_model

    async def install(self, agent: str, version: str | None = None, reinstall: bool = False) -> str:
        """Install ``agent``'s CLI (one install at a time); ``InstallFailed`` on failure."""
        async with self._installing:
            try:
                return await install_agent(
                    agent,
                    version=version,
                    reinstall=reinstall,
                    directory=self.settings.installed_in(),
                )
            except InstallError as exc:
                raise InstallFailed(agent, exc.reason) from exc
            except OSError as exc:  # the agents dir cannot be created, npm cannot start
                raise InstallFailed(agent, str(exc)) from exc

    # -- leases ---------------------------------------------------------------------------
    def _start_keeper(self) -> None:
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_leases())

    async def _keep_leases(self) -> None:
        assert self.leases is not None
        while True:
            await asyncio.sleep(self.leases.heartbeat_seconds)
            try:
                await self.heartbeat()
            except Exception:  # a store blip: the next heartbeat tries again
                logger.warning("renewing the session leases failed", exc_info=True)

    async def heartbeat(self) -> None:
        """One round of the lease keeper (run every ``heartbeat_seconds``): renew, stop
        serving the sessions whose lease was lost, take over those whose lease expired."""
        assert self.leases is not None
        served = set(self._sessions)  # before the renewal: later loads hold fresh leases
        held = await self.leases.renew()
        for session_id in served - held:
            live = self._sessions.pop(session_id, None)
            if live is None:
                continue
            logger.warning(
                "session %s: its lease was taken over by another server; not served here",
                session_id,
            )
            try:
                await live.close()
            except Exception:
                logger.exception("session %s: stopping its agent failed", session_id)
        for session_id in await self.leases.expired():
            if session_id in self._sessions:
                continue
            try:
                await self.get(session_id)
            except (SessionOwned, SessionNotFound):
                continue  # another server was first, or it is gone
            except Exception:
                logger.exception("session %s: taking it over failed", session_id)
            else:
                logger.info("session %s: taken over after its lease expired", session_id)

    async def shutdown(self) -> None:
        """Stop every agent (their sessions stay active: the next server resumes them), then
        the shared agent servers; with leases, release them (another server may take the
        sessions over at once)."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        for live in list(self._sessions.values()):
            try:
                await live.close()
            except Exception:
                logger.exception("session %s: stopping its agent failed", live.id)
        if self.leases is not None:
            try:
                await self.leases.release_all()
            except StoreError:
                logger.warning("releasing the session leases failed", exc_info=True)
        try:
            await self.settings.shared.stop_all()
        except Exception:
            logger.exception("stopping the shared agent servers failed")

    async def check_store(self) -> None:
        """``StoreUnavailable`` while the store cannot be reached: a session still waits for
        it to take an append (a full disk still answers reads), or a read does not answer
        within ``STORE_PROBE_SECONDS``."""
        for live in list(self._sessions.values()):
            if live.store_failure is not None:
                raise StoreUnavailable(f"a session waits for the store: {live.store_failure}")
        try:
            await asyncio.wait_for(self.store.get_session(_PROBE_ID), STORE_PROBE_SECONDS)
        except TimeoutError as exc:
            raise StoreUnavailable(f"no answer from the store in {STORE_PROBE_SECONDS} s") from exc


async def _discard(drafts: object) -> None:
    return None
