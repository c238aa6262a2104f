"""CLI start-up benchmark (issue 14): the wall clock of ``sandbox-agent --help`` and
``sandbox-agent replay --help`` (budget 0.3 s each), beside ``python -c pass`` and
``python -c 'import typer'`` measured in the same run, so that a loaded machine shows as a slow
floor rather than as a slow CLI.

    python benchmarks/cli.py             # 10 runs of each command
    python benchmarks/cli.py --runs 30
    python benchmarks/cli.py --bytecode  # with a bytecode cache, as an installed package runs
    python benchmarks/cli.py --json      # the figures as JSON

The commands take turns (one run of each, then again), so load from other jobs falls on all of
them alike; a first round warms the file cache and is not counted. Each figure is a fresh
process, measured from spawn to exit: best and median of the runs, and the median's ratio to
the median of ``python -c pass``.

With ``PYTHONDONTWRITEBYTECODE`` set and no ``__pycache__`` in the source tree, every run compiles
the CLI's modules from source; ``--bytecode`` keeps their bytecode in a temporary
``PYTHONPYCACHEPREFIX`` instead, which is what a pip-installed package gets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 0.3


def cli() -> list[str]:
    """The installed ``sandbox-agent`` script beside this interpreter, else its entry point."""
    script = Path(sys.executable).with_name("sandbox-agent")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from sandbox_agent.cli import main; main()"]


def commands() -> dict[str, list[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "sandbox-agent --help": [*cli(), "--help"],
        "sandbox-agent replay --help": [*cli(), "replay", "--help"],
        "sandbox-agent api sessions create --help": [*cli(), "api", "sessions", "create", "--help"],
    }


def measure(runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    todo = commands()
    times: dict[str, list[float]] = {name: [] for name in todo}
    for round in range(runs + 1):
        for name, argv in todo.items():
            started = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
            if round:  # round 0 warms the caches
                times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--bytecode", action="store_true", help="with a bytecode cache")
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args()

    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if args.bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        times = measure(args.runs, env)
    floor = statistics.median(times["python -c pass"])
    figures = {
        name: {
            "best_s": round(min(values), 4),
            "median_s": round(statistics.median(values), 4),
            "x_python_pass": round(statistics.median(values) / floor, 1),
        }
        for name, values in times.items()
    }
    if args.json:
        report = {
            "runs": args.runs,
            "bytecode_cache": args.bytecode,
            "load_average": os.getloadavg()[0],
            "budget_s": BUDGET_S,
            "figures": figures,
        }
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.runs} runs each, taking turns, {'with' if args.bytecode else 'without'} a "
        f"bytecode cache, load {os.getloadavg()[0]:.1f}; budget {BUDGET_S} s for the CLI's help"
    )
    print(f"{'command':<42} {'best s':>7} {'median s':>9} {'x pass':>7}")
    for name, row in figures.items():
        over = " over budget" if name.startswith("sandbox") and row["median_s"] > BUDGET_S else ""
        print(
            f"{name:<42} {row['best_s']:>7.3f} {row['median_s']:>9.3f} "
            f"{row['x_python_pass']:>7.1f}{over}"
        )


if __name__ == "__main__":
    main()
