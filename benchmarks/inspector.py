"""The inspector on a long session, measured in the browser (Playwright driving Debian's
Chromium, headless) against ``sandbox-agent inspect`` over SQLite:

    python benchmarks/inspector.py                # 100,000 events, snapshots every 1000
    python benchmarks/inspector.py --quick        # 5,000 events: a smoke run

1. first paint of the session view: from navigation to the transcript and state painted at the
   newest event (the goal: under 1 s);
2. the time-travel slider moved to a sequence with a snapshot, and to one halfway between two
   snapshots (``--snapshot-every`` / 2 events to replay): from the input event to the view
   repainted at that sequence (the goal: under 200 ms);
3. the baseline, in the same run and the same page: fetching the raw JSON state at the same
   sequences (``/api/sessions/{id}/state.json``, ``state_at`` serialised, no rendering).

The session is the replay benchmark's (turns of 50 events, mostly 300-byte deltas), appended
in batches of 1000 with a snapshot every ``--snapshot-every`` events. Prints the absolute
figures and the ratios to the baseline; ``--json`` prints them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

# The replay benchmark's session, written the same way (this script's directory is on the path).
from replay import fill
from sandbox_agent.store import open_store

CHROMIUM = os.environ.get("SANDBOX_AGENT_CHROMIUM", "/usr/bin/chromium")

# Moves the slider to ``seq`` as a person would (an input event), then waits until the view says
# it shows that sequence and the next frame is painted.
SLIDE = """async (seq) => {
  const t0 = performance.now();
  const slider = document.getElementById('slider');
  const shown = new Promise((resolve) => {
    const watch = new MutationObserver(() => {
      if (document.body.dataset.at === String(seq)) { watch.disconnect(); resolve(); }
    });
    watch.observe(document.body, { attributes: true });
  });
  slider.value = String(seq);
  slider.dispatchEvent(new Event('input', { bubbles: true }));
  await shown;
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  return performance.now() - t0;
}"""
FETCH_STATE = """async (url) => {
  const t0 = performance.now();
  const text = await (await fetch(url)).text();
  if (!text.startsWith('{')) throw new Error('not a state');
  return performance.now() - t0;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def inspect(url: str, log: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "sandbox_agent", "inspect", "--store", url, "-p", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"inspect did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def summary(times: list[float]) -> dict[str, float]:
    return {"best": min(times), "median": statistics.median(times), "worst": max(times)}


def measure(base: str, events: int, every: int, runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    session = base + "/s/big"
    # Sequences spread over the session, on snapshots and halfway between two.
    on_snapshot = [every * k for k in range(1, events // every + 1)][-runs * 2 :: 2][:runs]
    between = [seq - every // 2 for seq in on_snapshot]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        paints = []
        for _ in range(runs):
            page.goto("about:blank")
            page.goto(session)
            page.wait_for_selector(f"body[data-at='{events}']", timeout=30_000)
            paints.append(page.evaluate("performance.now()"))
        page.wait_for_selector("body[data-ready=true]")
        page.evaluate(SLIDE, events - every)  # warm: the first move of a page loads nothing new
        slides_on = [page.evaluate(SLIDE, seq) for seq in on_snapshot]
        slides_between = [page.evaluate(SLIDE, seq) for seq in between]
        state_url = base + "/api/sessions/big/state.json?seq="
        fetch_on = [page.evaluate(FETCH_STATE, state_url + str(seq)) for seq in on_snapshot]
        fetch_between = [page.evaluate(FETCH_STATE, state_url + str(seq)) for seq in between]
        browser.close()
    return {
        "first_paint_ms": summary(paints),
        "slide_to_snapshot_ms": summary(slides_on),
        "slide_between_snapshots_ms": summary(slides_between),
        "state_json_at_snapshot_ms": summary(fetch_on),
        "state_json_between_snapshots_ms": summary(fetch_between),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--snapshot-every", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delta-bytes", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="5,000 events, 3 runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs = 5000, 3
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM} (apt-get install chromium)")

    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'inspector-bench.db'}"

        async def build() -> float:
            start = time.perf_counter()
            async with await open_store(url) as store:
                await fill(store, "big", args.events, args.delta_bytes, args.snapshot_every)
            return time.perf_counter() - start

        fill_seconds = asyncio.run(build())
        with inspect(url, Path(directory) / "inspect.log") as base:
            figures = measure(base, args.events, args.snapshot_every, args.runs)
    figures["events"] = args.events
    figures["snapshot_every"] = args.snapshot_every
    figures["fill_seconds"] = fill_seconds
    figures["ratio_slide_to_snapshot_vs_state_json"] = (
        figures["slide_to_snapshot_ms"]["median"] / figures["state_json_at_snapshot_ms"]["median"]
    )
    figures["ratio_slide_between_vs_state_json"] = (
        figures["slide_between_snapshots_ms"]["median"]
        / figures["state_json_between_snapshots_ms"]["median"]
    )
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"inspector over SQLite: {args.events:,} events, snapshots every "
        f"{args.snapshot_every}, {args.runs} runs (filled in {fill_seconds:.1f} s)"
    )
    for key, goal in (
        ("first_paint_ms", 1000),
        ("slide_to_snapshot_ms", 200),
        ("slide_between_snapshots_ms", 200),
        ("state_json_at_snapshot_ms", None),
        ("state_json_between_snapshots_ms", None),
    ):
        f = figures[key]
        met = "met" if goal is not None and f["median"] < goal else "NOT met"
        verdict = "" if goal is None else f" (goal < {goal} ms, median: {met})"
        print(
            f"  {key:34} best {f['best']:7.1f}  median {f['median']:7.1f}  "
            f"worst {f['worst']:7.1f}{verdict}"
        )
    print(
        "  slider / raw state fetch (median): "
        f"{figures['ratio_slide_to_snapshot_vs_state_json']:.2f}x on a snapshot, "
        f"{figures['ratio_slide_between_vs_state_json']:.2f}x between two"
    )


if __name__ == "__main__":
    main()
