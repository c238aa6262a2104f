"""Filesystem API benchmark (issue 16): a file written and read back through a real server,
against ``cp`` of a file of the same size on the same disk, in the same run.

    python benchmarks/fs.py                 # 1 GiB (needs about 3 GiB free where --dir is)
    python benchmarks/fs.py --quick         # 16 MiB: a smoke test only
    python benchmarks/fs.py --json          # the figures as JSON

Figures:

1. write: ``PUT /v1/fs/file`` with the body streamed from generated data (a random 1 MiB block
   over and over: never a file on the client's side, never the whole body in memory), until the
   answer (the server has written it to a temporary file beside the target, fsynced it and
   renamed it); MB/s;
2. read: ``GET /v1/fs/file`` of that file, the body written to a local file on the same disk as
   it arrives (a download, what ``sdk.fs.read_to`` does), no fsync; MB/s;
3. ``cp`` of a local file of the same size (written beforehand from the same data) to a new file
   on the same disk: plain (the read side's match), and followed by an fsync of the copy
   (``sync FILE``: the durability the server gives a write); MB/s each;
4. the ratios: server write / (cp + sync), server read / cp (goal: at least 0.5 each);
5. the server's RSS (``/proc/<pid>/status``) idle, then its peak while each transfer runs
   (sampled every 20 ms), minus idle (goal: at most 30 MB above idle).

The page cache holds most of the file between the steps (the same for cp and the server).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from sandbox_agent.testing.server import ServerProcess

MIB = 1024 * 1024
GOALS = {
    "write_ratio": 0.5,
    "read_ratio": 0.5,
    "write_rss_over_idle_mb": 30.0,
    "read_rss_over_idle_mb": 30.0,
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class PeakRss:
    """The largest RSS of ``pid`` seen every ``interval`` seconds while in the ``with``."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


def generated(size: int, block: bytes) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        chunk = block[: min(len(block), size - sent)]
        sent += len(chunk)
        yield chunk


def mb_per_s(size: int, seconds: float) -> float:
    return size / MIB / seconds


def run(size: int, directory: Path) -> dict[str, Any]:
    block = os.urandom(MIB)
    root = directory / "root"
    root.mkdir()
    local = directory / "local.bin"
    with local.open("wb") as out:
        for chunk in generated(size, block):
            out.write(chunk)
    figures: dict[str, float] = {"size_mb": size / MIB}

    copy = directory / "copy.bin"
    started = time.perf_counter()
    subprocess.run(["cp", str(local), str(copy)], check=True)
    figures["cp_mb_s"] = mb_per_s(size, time.perf_counter() - started)
    copy.unlink()
    started = time.perf_counter()
    subprocess.run(["cp", str(local), str(copy)], check=True)
    subprocess.run(["sync", str(copy)], check=True)
    figures["cp_sync_mb_s"] = mb_per_s(size, time.perf_counter() - started)
    copy.unlink()

    own = directory / "server"
    own.mkdir()
    server = ServerProcess(
        f"sqlite:///{own}/store.db",
        own / "server.log",
        args=["--no-token", "--root", str(root), "--fs-max-file-bytes", str(size)],
    )
    server.start()
    try:
        pid = server.pid
        assert pid is not None
        time.sleep(1.0)  # settle before the idle figure
        idle = rss_mb(pid)
        figures["idle_rss_mb"] = idle
        timeout = httpx.Timeout(None, connect=10.0)
        with httpx.Client(base_url=server.url, timeout=timeout) as http:
            with PeakRss(pid) as peak:
                started = time.perf_counter()
                answer = http.put(
                    "/v1/fs/file", params={"path": "big.bin"}, content=generated(size, block)
                )
                elapsed = time.perf_counter() - started
            answer.raise_for_status()
            assert answer.json()["bytesWritten"] == size
            figures["write_mb_s"] = mb_per_s(size, elapsed)
            figures["write_rss_over_idle_mb"] = peak.peak - idle
            with PeakRss(pid) as peak:
                started = time.perf_counter()
                received = 0
                with (
                    http.stream("GET", "/v1/fs/file", params={"path": "big.bin"}) as response,
                    copy.open("wb") as out,
                ):
                    response.raise_for_status()
                    for chunk in response.iter_raw(MIB):
                        received += out.write(chunk)
                elapsed = time.perf_counter() - started
            assert received == size
            figures["read_mb_s"] = mb_per_s(size, elapsed)
            figures["read_rss_over_idle_mb"] = peak.peak - idle
    finally:
        server.stop()
    figures["write_ratio"] = figures["write_mb_s"] / figures["cp_sync_mb_s"]
    figures["read_ratio"] = figures["read_mb_s"] / figures["cp_mb_s"]
    goals = {
        name: {
            "goal": goal,
            "met": figures[name] >= goal if name.endswith("ratio") else figures[name] <= goal,
        }
        for name, goal in GOALS.items()
    }
    return {"figures": figures, "goals": goals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB: a smoke test")
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (one disk)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    size = (16 if options.quick else options.size_mb) * MIB
    directory = Path(tempfile.mkdtemp(prefix="fs-bench-", dir=options.dir))
    try:
        report = run(size, directory)
    finally:
        shutil.rmtree(directory)
    if options.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    figures = report["figures"]
    for name, value in figures.items():
        goal = report["goals"].get(name)
        mark = (
            "" if goal is None else f"  (goal {goal['goal']}: {'met' if goal['met'] else 'MISSED'})"
        )
        print(f"{name:>24}: {value:10.2f}{mark}")


if __name__ == "__main__":
    main()
