"""The one benchmark entry: ``list``, ``table FILE`` and ``NAME [options]``."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import BenchError, Runner, loadavg, machine, say, source_fingerprint
from .registry import BENCHMARKS, REGISTRY, Benchmark

USAGE = """\
python scripts/bench.py list                  # the benchmarks, one line each
python scripts/bench.py NAME [options]        # run one (NAME --help: its options)
python scripts/bench.py NAME --tiny           # a smoke run at tiny sizes, in seconds
python scripts/bench.py table FILE            # the markdown table of a --json FILE
"""


def list_benchmarks() -> str:
    """Return one line per registered benchmark."""
    width = max(len(bench.name) for bench in BENCHMARKS)
    return "\n".join(f"{bench.name:<{width}}  {bench.summary}" for bench in BENCHMARKS)


def table(path: Path) -> str:
    """Return the markdown table of a results document written by ``--json``."""
    document = json.loads(path.read_text())
    return REGISTRY[document["benchmark"]].load().table(document["result"])


def parse(bench: Benchmark, argv: Sequence[str]) -> argparse.Namespace:
    """Return the options of one benchmark (``--tiny`` puts its smoke-run options first)."""
    module = bench.load()
    parser = argparse.ArgumentParser(
        prog=f"bench.py {bench.name}",
        description=f"{bench.summary}.\n\n{module.__doc__ or ''}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", type=Path, help="write the results document to this file")
    parser.add_argument(
        "--tiny", action="store_true", help=f"smoke run: {bench.tiny or 'defaults'}"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds before a run counts as hung"
    )
    module.add_arguments(parser)
    options = parser.parse_args(argv)
    if options.tiny:  # the smoke options, then the caller's, which win
        options = parser.parse_args([*bench.tiny.split(), *argv])
    return options


def run(bench: Benchmark, argv: Sequence[str]) -> dict[str, Any]:
    """Run one benchmark; return its results document (what ``--json`` holds)."""
    options = parse(bench, argv)
    missing = bench.missing()
    if missing:
        raise BenchError(f"{bench.name} needs {', '.join(missing)}: pip install -e .[bench]")
    runner = Runner(options.timeout)
    info = machine(runner)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    began = time.perf_counter()
    result = bench.load().run(options, runner)
    info["load_average_at_end"] = loadavg()
    notes = []
    if source_fingerprint() != info["hpcapp_sources"]:
        # Someone edited hpcapp while we measured: say so rather than mix versions silently.
        notes.append("WARNING: hpcapp's sources changed during the run: run again")
    document = {
        "benchmark": bench.name,
        "command": ["python", "scripts/bench.py", bench.name, *argv],
        "started": started,
        "elapsed_seconds": time.perf_counter() - began,
        "machine": info,
        "notes": notes,
        "result": result,
    }
    if options.json:
        options.json.write_text(json.dumps(document, indent=1))
    return document


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``list``, ``table FILE`` or a benchmark's name."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"{USAGE}\n{list_benchmarks()}")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "list":
        print(list_benchmarks())
        return 0
    if command == "table":
        if len(rest) != 1:
            print("usage: python scripts/bench.py table FILE", file=sys.stderr)
            return 2
        print(table(Path(rest[0])))
        return 0
    if command not in REGISTRY:
        print(f"bench: no benchmark {command!r}; `python scripts/bench.py list`", file=sys.stderr)
        return 2
    try:
        document = run(REGISTRY[command], rest)
    except (BenchError, FileNotFoundError) as error:
        say(f"bench: {command}: {error}")
        return 1
    print(REGISTRY[command].load().table(document["result"]))
    for note in document["notes"]:
        print(f"note: {note}")
    return 0
