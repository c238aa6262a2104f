"""How a session rides out a store that cannot be reached (``StoreUnavailable``: the database's
connection, the network or the disk failed).

An append that fails so is tried again, the very same batch (same event ids and times, so that
a batch the store kept although its answer was lost is recognised as stored), after ``first``
seconds, the pause doubling up to ``most``, as long as the next try would start within
``seconds`` of the first one (a try in flight ends when the driver's own timeout says: Postgres'
``connect_timeout``, SQLite's ``busy_timeout``). The appends of a session are in order, so the
agent's output waits meanwhile.

Past that bound the append raises ``StoreUnavailable``, and the session:

1. stops the agent of its open turn (what it says can no longer be recorded; the next prompt
   starts it again, resuming its native session);
2. tries every ``probe`` seconds to record ``error {code: store_unavailable}``, the turn's
   pending permissions and questions resolved (``metadata.reason: store_unavailable``: the agent
   that asked them is gone) and ``turn.ended {reason: error}``; when the store takes them the
   session is idle again and its queued prompts start. Until then each of its appends makes one
   try, so that a request fails at once (503 ``store_unavailable``) instead of waiting.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreRetry:
    """The bounds above, in seconds (``LiveSession.store_retry``)."""

    #: No try starts later than this after the first one.
    seconds: float = 5.0
    #: The first pause; each next one doubles, up to ``most``.
    first: float = 0.1
    most: float = 1.0
    #: The pause between two tries of the recovery (after the bound).
    probe: float = 1.0

    def __post_init__(self) -> None:
        for name in ("seconds", "first", "most", "probe"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"StoreRetry.{name} must be >= 0 seconds")


STORE_RETRY = StoreRetry()
