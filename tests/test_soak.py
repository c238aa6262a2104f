"""The soak (issue 15; slow suite): 200 sessions, mixed mock turns for 10 minutes, the server
SIGKILLed every minute or two and started again on the same SQLite store.

It holds when: no request gets a 5xx; every prompt the server acknowledged (204 started, 202
queued) is in its session's stream; at the end ``sandbox-agent replay --all --check`` finds
nothing in the store; and the server's memory stays flat (the resident set at the end of each
life of the server, each life as long as the others, within 10% of the others; docs/performance.md,
"Session 10: the soak's memory", says what it took).

``SANDBOX_AGENT_SOAK_SECONDS`` makes it longer (or shorter) for runs by hand: the kills come every
10-20% of the run, so any length gives five to ten lives."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from sandbox_agent.testing.consistency import check_store
from sandbox_agent.testing.server import ServerProcess

SOAK_SECONDS = float(os.environ.get("SANDBOX_AGENT_SOAK_SECONDS", "600"))

# The run's own length plus its set-up, restarts and final check: the suite's 300 s default
# would cut the default 600 s run in the middle.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(SOAK_SECONDS + 300)]
SESSIONS = 200
WORKERS = 8
#: The mock's commands (the first word of a prompt) and how often each is sent.
COMMANDS = {"echo": 6, "tool": 3, "markdown": 2, "status": 2, "error": 1, "permission": 2,
            "question": 2, "demo": 1}  # fmt: skip
#: The end-of-life resident sets may differ by this much (the issue's "flat within 10%").
RSS_SPREAD = 0.10


@dataclass
class Soak:
    server: ServerProcess
    rng: random.Random
    deadline: float
    acknowledged: dict[str, list[str]] = field(default_factory=dict)  # session -> prompt tags
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lives: list[tuple[float, int]] = field(default_factory=list)  # (seconds lived, final RSS)
    restarting: bool = False
    quiet_until: float = 0.0  # connections pooled before a kill may fail until then
    prompts: int = 0

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


async def worker(soak: Soak, client: httpx.AsyncClient) -> None:
    rng = soak.rng
    while time.monotonic() < soak.deadline:
        sid = f"soak-{rng.randrange(SESSIONS)}"
        action = rng.choices(["prompt", "answer", "cancel", "read"], [8, 4, 1, 2])[0]
        try:
            if action == "prompt":
                soak.prompts += 1
                tag = f"[{soak.prompts}]"
                command = rng.choices(list(COMMANDS), list(COMMANDS.values()))[0]
                answer = await client.post(
                    f"/v1/sessions/{sid}/messages", json={"message": f"{command} {tag}"}
                )
                if answer.status_code in (202, 204):
                    soak.acknowledged.setdefault(sid, []).append(tag)
                elif answer.status_code != 409:  # 409: the queue is full, or the session ended
                    soak.failures.append(f"prompt {sid}: {answer.status_code} {answer.text}")
                soak.count(f"prompt {answer.status_code}")
            elif action == "answer":
                await answer_pending(soak, client, sid)
            elif action == "cancel":
                answer = await client.post(f"/v1/sessions/{sid}/cancel")
                soak.count(f"cancel {answer.status_code}")
                if answer.status_code >= 500:
                    soak.failures.append(f"cancel {sid}: {answer.status_code} {answer.text}")
            else:
                answer = await client.get(
                    f"/v1/sessions/{sid}/events", params={"offset": rng.randrange(50), "limit": 100}
                )
                soak.count(f"read {answer.status_code}")
                if answer.status_code != 200:
                    soak.failures.append(f"read {sid}: {answer.status_code} {answer.text}")
        except httpx.TransportError:
            # The server is being killed or is starting: expected then, and only then.
            if not soak.restarting and time.monotonic() > soak.quiet_until:
                soak.failures.append(f"{action} {sid}: connection failed while the server ran")
            soak.count("transport error")
            await asyncio.sleep(0.2)


async def answer_pending(soak: Soak, client: httpx.AsyncClient, sid: str) -> None:
    state = await client.get(f"/v1/sessions/{sid}/state")
    if state.status_code != 200:
        soak.failures.append(f"state {sid}: {state.status_code} {state.text}")
        return
    body = state.json()
    for pid in body["pending_permissions"]:
        reply = soak.rng.choice(["once", "always", "reject"])
        answer = await client.post(
            f"/v1/sessions/{sid}/permissions/{pid}/reply", json={"reply": reply}
        )
        soak.count(f"permission {answer.status_code}")
        if answer.status_code >= 500:
            soak.failures.append(f"permission {sid}: {answer.status_code} {answer.text}")
    for qid in body["pending_questions"]:
        answer = await client.post(f"/v1/sessions/{sid}/questions/{qid}/reject")
        soak.count(f"question {answer.status_code}")
        if answer.status_code >= 500:
            soak.failures.append(f"question {sid}: {answer.status_code} {answer.text}")


async def killer(soak: Soak) -> None:
    born = time.monotonic()
    while True:
        pause = soak.rng.uniform(0.10, 0.20) * SOAK_SECONDS
        if time.monotonic() + pause >= soak.deadline:
            break
        await asyncio.sleep(pause)
        soak.lives.append((time.monotonic() - born, soak.server.rss_bytes()))
        soak.restarting = True
        soak.server.kill()
        await asyncio.to_thread(soak.server.start, 60)
        soak.restarting = False
        born = time.monotonic()
        soak.quiet_until = born + 2
    await asyncio.sleep(max(0.0, soak.deadline - time.monotonic()))
    soak.lives.append((time.monotonic() - born, soak.server.rss_bytes()))


async def drive(soak: Soak) -> None:
    limits = httpx.Limits(max_connections=WORKERS)
    async with httpx.AsyncClient(base_url=soak.server.url, timeout=60, limits=limits) as client:
        for n in range(SESSIONS):
            created = await client.post(f"/v1/sessions/soak-{n}", json={"agent": "mock"})
            assert created.status_code == 200, created.text
        await asyncio.gather(killer(soak), *(worker(soak, client) for _ in range(WORKERS)))
        # The turns still waiting for an answer get one, so the store ends settled.
        for n in range(SESSIONS):
            await answer_pending(soak, client, f"soak-{n}")


def test_soak_200_sessions_with_sigkills_loses_nothing_and_stays_flat(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'soak.db'}"
    server = ServerProcess(
        url, tmp_path / "server.log", mock_delay_ms=2, args=["--no-token", "--root", str(tmp_path)]
    ).start()
    seed = random.randrange(2**32)
    soak = Soak(server, random.Random(seed), time.monotonic() + SOAK_SECONDS)
    try:
        asyncio.run(drive(soak))
        with server.client() as client:
            missing = []
            for sid, tags in soak.acknowledged.items():
                text = json.dumps(client.get(f"/v1/sessions/{sid}/events").json()["events"])
                missing += [f"{sid} {tag}" for tag in tags if tag not in text]
    finally:
        server.stop(timeout=30)
    report = f"seed {seed}, {soak.prompts} prompts, counts {soak.counts}, lives {soak.lives}"
    print(report)
    assert not soak.failures, (soak.failures[:20], report)
    assert not missing, (missing[:20], report)
    assert len(soak.lives) >= 5, report
    check = subprocess.run(
        [sys.executable, "-m", "sandbox_agent", "replay", "--all", "--check", "--store", url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert check.returncode == 0, (check.stdout[-3000:], check.stderr[-3000:])
    check_store(url)
    # Lives of comparable length (a last one cut short by the deadline says little).
    full = [rss for lived, rss in soak.lives if lived >= 0.08 * SOAK_SECONDS]
    spread = max(full) / min(full) - 1
    print(f"end-of-life RSS spread +{spread:.1%} (bound {RSS_SPREAD:.0%})")
    assert spread <= RSS_SPREAD, f"end-of-life RSS not flat: +{spread:.1%}; {report}"
