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
   (sampled every 20 ms), minus idle (goal: at most 30 MB above idle);
6. for context, the same write and read with ``curl`` as the client (``curl -T`` of the local
   file, ``curl -o``): the server without a Python client's own cost.

Every step starts after a ``sync`` (no dirty pages of the step before to write back), and each
runs ``--repeat`` times, the best kept (the same for cp and the server): the disk of a shared
machine is noisy. The page cache holds most of the file between the steps, for cp and the
server alike.
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

from sandbox_agent.testing.server import ServerProcess, rss_bytes

MIB = 1024 * 1024
GOALS = {
    "write_ratio": 0.5,
    "read_ratio": 0.5,
    "write_rss_over_idle_mb": 30.0,
    "read_rss_over_idle_mb": 30.0,
}


def rss_mb(pid: int) -> float:
    return rss_bytes(pid) / 2**20


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


def best(figures: dict[str, float], name: str, value: float, lower: bool = False) -> None:
    old = figures.get(name)
    if old is None or (value < old if lower else value > old):
        figures[name] = value


def timed(command: list[str]) -> float:
    os.sync()
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run(size: int, directory: Path, repeat: int) -> dict[str, Any]:
    block = os.urandom(MIB)
    root = directory / "root"
    root.mkdir()
    local = directory / "local.bin"
    with local.open("wb") as out:
        for chunk in generated(size, block):
            out.write(chunk)
    figures: dict[str, float] = {"size_mb": size / MIB}

    copy = directory / "copy.bin"
    for _ in range(repeat):
        best(figures, "cp_mb_s", mb_per_s(size, timed(["cp", str(local), str(copy)])))
        copy.unlink()
        seconds = timed(["cp", str(local), str(copy)])
        started = time.perf_counter()
        subprocess.run(["sync", str(copy)], check=True)
        seconds += time.perf_counter() - started
        best(figures, "cp_sync_mb_s", mb_per_s(size, seconds))
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
            for _ in range(repeat):
                os.sync()
                with PeakRss(pid) as peak:
                    started = time.perf_counter()
                    answer = http.put(
                        "/v1/fs/file", params={"path": "big.bin"}, content=generated(size, block)
                    )
                    elapsed = time.perf_counter() - started
                answer.raise_for_status()
                assert answer.json()["bytesWritten"] == size
                best(figures, "write_mb_s", mb_per_s(size, elapsed))
                best(figures, "write_rss_over_idle_mb", peak.peak - idle, lower=True)
                os.sync()
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
                copy.unlink()
                best(figures, "read_mb_s", mb_per_s(size, elapsed))
                best(figures, "read_rss_over_idle_mb", peak.peak - idle, lower=True)
        if shutil.which("curl"):
            url = f"{server.url}/v1/fs/file?path=big.bin"
            for _ in range(repeat):
                with PeakRss(pid) as peak:
                    seconds = timed(["curl", "-sf", "-T", str(local), url])
                best(figures, "curl_write_mb_s", mb_per_s(size, seconds))
                with PeakRss(pid) as peak_read:
                    seconds = timed(["curl", "-sf", "-o", str(copy), url])
                copy.unlink()
                best(figures, "curl_read_mb_s", mb_per_s(size, seconds))
                best(
                    figures,
                    "curl_rss_over_idle_mb",
                    max(peak.peak, peak_read.peak) - idle,
                    lower=True,
                )
    finally:
        server.stop()
    figures["write_ratio"] = figures["write_mb_s"] / figures["cp_sync_mb_s"]
    figures["read_ratio"] = figures["read_mb_s"] / figures["cp_mb_s"]
    if "curl_write_mb_s" in figures:
        figures["curl_write_ratio"] = figures["curl_write_mb_s"] / figures["cp_sync_mb_s"]
        figures["curl_read_ratio"] = figures["curl_read_mb_s"] / figures["cp_mb_s"]
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
    parser.add_argument("--repeat", type=int, default=2, help="runs of each step, best kept")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    size = (16 if options.quick else options.size_mb) * MIB
    directory = Path(tempfile.mkdtemp(prefix="fs-bench-", dir=options.dir))
    try:
        report = run(size, directory, 1 if options.quick else options.repeat)
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
