"""SDK benchmarks (issue 5): an embedded ``sandbox-agent server`` (mock agent at zero delay,
SQLite store) and the SDK in this process.

    python benchmarks/sdk.py            # the full run
    python benchmarks/sdk.py --quick    # small counts: a smoke test, not a measurement
    python benchmarks/sdk.py --json     # the figures as JSON

Figures:

1. mirror throughput: a session of ``--turns`` ``markdown`` turns is made on the server, then a
   fresh SDK with an empty local SQLite store adopts it; events copied server -> local store per
   second (SSE, parse, one ``append`` with ``expected_sequence`` per event, snapshots);
2. the cost of ``session.prompt`` over raw HTTP for one mock "OK" turn: p50 of ``prompt()``
   (which also mirrors every event and replays the turn from the local store) against p50 of a
   raw ``httpx`` ``POST .../messages/stream`` read to its terminal event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

from sandbox_agent import SandboxAgent

OK_PROMPT = "Reply with exactly the single word OK."


async def mirror_throughput(sdk: SandboxAgent, turns: int, tmp: Path) -> tuple[int, float]:
    source = await sdk.create_session(agent="mock")
    for _ in range(turns):
        await source.prompt("markdown")
    total = (await sdk.request_json("GET", f"/v1/sessions/{source.id}"))["lastSequence"]
    store_url = f"sqlite:///{tmp / 'mirror.db'}"
    async with await SandboxAgent.connect(
        sdk.base_url, token=sdk.server.token if sdk.server else None, store=store_url
    ) as fresh:
        started = time.perf_counter()
        copy = await fresh.resume_session(source.id)
        async for event in copy.events():
            if event.sequence >= total:
                break
        elapsed = time.perf_counter() - started
    return total, total / elapsed


async def prompt_cost(sdk: SandboxAgent, turns: int) -> tuple[float, float]:
    session = await sdk.create_session(agent="mock")
    raw_id = (await sdk.create_session(agent="mock")).id
    via_sdk: list[float] = []
    via_http: list[float] = []
    for n in range(turns + 3):
        started = time.perf_counter()
        result = await session.prompt(OK_PROMPT)
        sdk_time = time.perf_counter() - started
        assert result.text == "OK"
        started = time.perf_counter()
        async with aconnect_sse(
            sdk.http,
            "POST",
            f"/v1/sessions/{raw_id}/messages/stream",
            json={"message": OK_PROMPT},
            timeout=httpx.Timeout(30, read=None),
        ) as stream:
            async for sse in stream.aiter_sse():
                if json.loads(sse.data)["type"] == "turn.ended":
                    break
        http_time = time.perf_counter() - started
        if n >= 3:  # warm-up
            via_sdk.append(sdk_time)
            via_http.append(http_time)
    return statistics.median(via_sdk), statistics.median(via_http)


async def main(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with await SandboxAgent.start(mock_delay_ms=0) as sdk:
            events, rate = await mirror_throughput(sdk, args.turns, Path(tmp))
            sdk_p50, http_p50 = await prompt_cost(sdk, args.prompts)
    return {
        "mirror_events": events,
        "mirror_events_per_s": rate,
        "prompt_p50_ms": sdk_p50 * 1000,
        "raw_http_p50_ms": http_p50 * 1000,
        "prompt_over_raw_ms": (sdk_p50 - http_p50) * 1000,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--turns", type=int, default=200, help="markdown turns to mirror")
    parser.add_argument("--prompts", type=int, default=50, help="OK turns to time")
    args = parser.parse_args()
    if args.quick:
        args.turns, args.prompts = 10, 5
    figures = asyncio.run(main(args))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"mirror: {figures['mirror_events']:.0f} events, "
        f"{figures['mirror_events_per_s']:.0f} events/s into SQLite"
    )
    print(
        f"prompt(): p50 {figures['prompt_p50_ms']:.1f} ms; raw HTTP p50 "
        f"{figures['raw_http_p50_ms']:.1f} ms; SDK cost {figures['prompt_over_raw_ms']:+.1f} ms"
    )


if __name__ == "__main__":
    cli()
