"""``sandbox-agent db rekey``: seal every stored payload and snapshot state again as the store
is opened now (its ``compress`` option and active key, or the key ``to`` names), through the
optional driver primitive ``rewrite_events`` and ``insert_snapshot`` (which replaces)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox_agent.store.driver import RewrittenRow
from sandbox_agent.store.errors import StoreConfigError
from sandbox_agent.store.event_store import EventStore
from sandbox_agent.store.seal import Keyring, Sealer, Where, is_envelope, plain_text

PAGE = 500


@dataclass
class RekeySummary:
    """What ``rekey`` did: sessions gone through, payloads and states written again, those
    already sealed as wanted."""

    sessions: int = 0
    events_rewritten: int = 0
    events_kept: int = 0
    snapshots_rewritten: int = 0
    snapshots_kept: int = 0
    target: str = ""


def target_sealer(store: EventStore, to: str | None, decrypt: bool) -> Sealer | None:
    """How ``rekey`` seals: as ``store`` does, with the key ``to`` active, or (``decrypt``)
    compressed at most."""
    sealer = store.sealer
    compress = None if sealer is None else sealer.compress
    keyring = None if sealer is None else sealer.keyring
    if decrypt:
        if to is not None:
            raise StoreConfigError("rekey: --to and --decrypt exclude each other")
        return Sealer(compress, None) if compress is not None else None
    if to is not None:
        if keyring is None:
            raise StoreConfigError(
                f"rekey --to {to}: the store was opened without keys (keys=env:NAME or "
                "keys=file:PATH)"
            )
        keyring = Keyring(keyring.keys, to)  # StoreConfigError for an unknown key id
        return Sealer(compress, keyring)
    return sealer


class _Resealer:
    def __init__(self, store: EventStore, target: Sealer | None) -> None:
        self.opener = store._opener  # every key of the store's keyring
        self.target = target
        self.wanted = (None, "") if target is None else target.wanted()

    def again(self, stored: Any, where: Where) -> str | None:
        """The new stored text of ``stored``, or None when it is sealed as wanted already."""
        code, kid = self.wanted
        current = self.opener.sealed_with(stored)
        same_key = current is not None and bool(kid) and current[1] == kid
        if same_key and current is not None and (code is None or current[0][0] == code):
            return None  # encrypted with the wanted key (sealing again only changes the nonce)
        if isinstance(stored, bytes | bytearray | memoryview):
            stored = bytes(stored).decode()
        text = self.opener.open(stored, where) if is_envelope(stored) else stored
        new = self.target.seal(text, where) if self.target is not None else plain_text(text)
        if same_key and self.opener.sealed_with(new) == current:
            return None  # compression does not pay for it: as it was
        return None if new == stored else new


async def rekey(
    store: EventStore,
    *,
    to: str | None = None,
    decrypt: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> RekeySummary:
    """Seal every payload (``data``, ``raw``) and snapshot state of ``store`` again, as it
    seals new ones (``to``: with that key active; ``decrypt``: with no encryption). Needs
    every key the stored payloads name. A session at a time, a page of events a transaction:
    it can stop and run again, and a server may append meanwhile."""
    target = target_sealer(store, to, decrypt)
    reseal = _Resealer(store, target)
    summary = RekeySummary(target="plain" if target is None else target.describe())
    driver = store.driver
    for record in await store.all_sessions():
        summary.sessions += 1
        sid = record.id
        after = 0
        while rows := await driver.select_events(sid, after, PAGE):
            changed: list[RewrittenRow] = []
            for row in rows:
                sequence, event_id = int(row[0]), str(row[1])
                data = reseal.again(row[7], Where(sid, sequence, event_id, "data"))
                raw = (
                    None
                    if row[8] is None
                    else reseal.again(row[8], Where(sid, sequence, event_id, "raw"))
                )
                if data is None and raw is None:
                    summary.events_kept += 1
                    continue
                old_raw = row[8] if row[8] is None or isinstance(row[8], str) else str(row[8])
                changed.append(
                    RewrittenRow(
                        sequence,
                        data if data is not None else _text(row[7]),
                        raw if raw is not None else old_raw,
                    )
                )
            if changed:
                await driver.rewrite_events(sid, changed)
                summary.events_rewritten += len(changed)
            after = int(rows[-1][0])
            if on_progress is not None:
                on_progress(len(rows))
        for sequence, version in await driver.select_snapshot_keys(sid):
            snapshot = await driver.select_snapshot(sid, sequence, version)
            if snapshot is None or (snapshot.sequence, snapshot.version) != (sequence, version):
                continue  # deleted meanwhile
            where = Where(sid, sequence, f"snapshot {sequence}/{version}", "state")
            state = reseal.again(snapshot.state, where)
            if state is None:
                summary.snapshots_kept += 1
                continue
            await driver.insert_snapshot(sid, sequence, version, state, snapshot.created_at)
            summary.snapshots_rewritten += 1
    return summary


def _text(value: Any) -> str:
    return value if isinstance(value, str) else bytes(value).decode()
