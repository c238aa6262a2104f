"""The built-in consumer that publishes every event of a store to NATS JetStream, once.

Each event goes to ``<prefix>.<session>.<type>`` (``subject``) with the JSON of the event as
its payload and ``Nats-Msg-Id`` set to ``message_id``: the session's id and the event's id
(an event id is unique within its session only). The consumer's checkpoint moves only after
JetStream acknowledged every message of the batch; a publisher killed before that publishes
the batch again on restart, and JetStream drops the messages it already holds, by their id.
That de-duplication holds within the stream's duplicate window (``duplicate_window``, 2
minutes by default): a publisher that stays down longer than the window, with a batch
published but not checkpointed, may leave those messages twice in the stream.

Needs the ``nats`` extra (``pip install 'sandbox-agent[nats]'``, the ``nats-py`` client).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sandbox_agent.consumers.consumer import DEFAULT_BATCH, Consumer
from sandbox_agent.store import EventStore, PositionedEvent
from sandbox_agent.store.checkpoints import CheckpointTransaction
from sandbox_agent.store.errors import StoreConfigError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

#: JetStream's default duplicate window, in seconds.
DEFAULT_DUPLICATE_WINDOW = 120.0
#: Seconds to wait for JetStream's acknowledgements of one batch before it is retried.
DEFAULT_ACK_TIMEOUT = 10.0
# What a subject token keeps as it is; NATS refuses '.', '*', '>' and white space in one and
# recommends this set.
_PLAIN = re.compile(r"[A-Za-z0-9_-]")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_STREAM = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


logger = logging.getLogger(__name__)


async def _log_error(exc: Exception) -> None:
    logger.warning("NATS: %r", exc)


class NatsMissing(StoreConfigError):
    """The ``nats`` extra (the ``nats-py`` client) is not installed."""


def subject_token(text: str) -> str:
    """``text`` as one subject token: letters, digits, ``-`` and ``_`` as they are, every other
    character as ``%XX`` per UTF-8 byte, and the empty text as ``%``. One text, one token: the
    mapping is one to one."""
    if not text:
        return "%"
    return "".join(
        ch if _PLAIN.match(ch) else "".join(f"%{b:02X}" for b in ch.encode()) for ch in text
    )


def subject(prefix: str, session_id: str, event_type: str) -> str:
    """``<prefix>.<session>.<type>``, with the type's dot-separated words as tokens of their
    own (``app.s1.turn.ended``), so ``app.s1.>`` is one session and ``app.*.turn.ended`` one
    type everywhere."""
    words = ".".join(subject_token(word) for word in event_type.split("."))
    return f"{prefix}.{subject_token(session_id)}.{words}"


def message_id(event: PositionedEvent) -> str:
    """The ``Nats-Msg-Id`` of an event: ``<session>/<event id>``, each percent-encoded, so it
    is unique in the store and safe in a header."""
    session, event_id = event.event.session_id, event.event.event_id
    return f"{quote(session, safe='')}/{quote(event_id, safe='')}"


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise StoreConfigError(
            "a subject prefix is dot-separated words of letters, digits, '-' and '_' "
            f"(no wildcards), got {prefix!r}"
        )
    return prefix


def check_stream(stream: str) -> str:
    if not _STREAM.match(stream):
        raise StoreConfigError(
            f"a stream name is 1 to 255 letters, digits, '-' and '_', got {stream!r}"
        )
    return stream


@dataclass
class PublishStats:
    """What a publisher did since it started: messages acknowledged as new, and as
    duplicates (a batch published again after a crash or a failed acknowledgement)."""

    published: int = 0
    duplicates: int = 0


class JetStreamPublisher:
    """Publishes the events of ``store`` to JetStream ``stream`` as consumer ``name`` (default
    ``nats:<stream>``). Use it as an async context manager (it connects and, with
    ``create_stream``, makes the stream on ``<prefix>.>`` when missing), then ``run`` or
    ``run_until_caught_up``."""

    def __init__(
        self,
        store: EventStore,
        *,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        stream: str,
        subject_prefix: str,
        name: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        create_stream: bool = True,
        poll_interval: float = 0.2,
    ) -> None:
        if duplicate_window <= 0:
            raise StoreConfigError(f"duplicate_window must be > 0 s, got {duplicate_window}")
        if ack_timeout <= 0:
            raise StoreConfigError(f"ack_timeout must be > 0 s, got {ack_timeout}")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.stream = check_stream(stream)
        self.prefix = check_prefix(subject_prefix)
        self.duplicate_window = duplicate_window
        self.ack_timeout = ack_timeout
        self.create_stream = create_stream
        self.stats = PublishStats()
        self.consumer = Consumer(
            store,
            name or f"nats:{stream}",
            self._publish,
            batch_size=batch_size,
            poll_interval=poll_interval,
        )
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    async def __aenter__(self) -> JetStreamPublisher:
        try:
            import nats
        except ImportError as exc:
            raise NatsMissing(
                "publishing to NATS needs the nats extra: pip install 'sandbox-agent[nats]'"
            ) from exc
        self._nc = await nats.connect(
            servers=self.servers,
            connect_timeout=5,
            max_reconnect_attempts=3,
            error_cb=_log_error,  # one line each; nats-py's own prints a traceback per try
        )
        self._js = self._nc.jetstream()
        try:
            await self._ensure_stream()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc, self._js = self._nc, None, None
            await nc.close()

    async def _ensure_stream(self) -> None:
        from nats.js.errors import NotFoundError

        assert self._js is not None
        try:
            await self._js.stream_info(self.stream)
            return
        except NotFoundError:
            if not self.create_stream:
                raise StoreConfigError(
                    f"JetStream has no stream {self.stream!r} (create it, or let the "
                    "publisher create it)"
                ) from None
        await self._js.add_stream(
            name=self.stream,
            subjects=[f"{self.prefix}.>"],
            duplicate_window=self.duplicate_window,
        )

    async def _publish(self, batch: Sequence[PositionedEvent], txn: CheckpointTransaction) -> None:
        """Publish the batch in position order, without waiting between messages, then wait
        for every acknowledgement: an error or a timeout fails the batch, whose checkpoint then
        does not move (it is published again, and JetStream drops what it holds)."""
        js = self._js
        if js is None:
            raise RuntimeError("JetStreamPublisher is not connected: use it with 'async with'")
        futures: list[asyncio.Future[Any]] = []
        for item in batch:
            event = item.event
            futures.append(
                await js.publish_async(
                    subject(self.prefix, event.session_id, event.type),
                    event.model_dump_json().encode(),
                    stream=self.stream,
                    headers={
                        "Nats-Msg-Id": message_id(item),
                        "Sandbox-Agent-Position": str(item.position),
                    },
                )
            )
        acks = await asyncio.wait_for(asyncio.gather(*futures), self.ack_timeout)
        duplicates = sum(bool(ack.duplicate) for ack in acks)
        txn.on_commit(lambda: self._count(len(acks) - duplicates, duplicates))

    def _count(self, published: int, duplicates: int) -> None:
        self.stats.published += published
        self.stats.duplicates += duplicates

    async def run_until_caught_up(self) -> int:
        """Publish every event not yet published; how many (duplicates included)."""
        return await self.consumer.run_until_caught_up()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish events as they are stored, until ``stop`` is set."""
        await self.consumer.run(stop)
