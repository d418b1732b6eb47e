"""quantile's per-cell selection on one core: packed int16 selected as stored, against numpy.

Times the two paths of :func:`hpcapp.kernels.quantile.cell_quantiles` on one ``(records,
cells)`` tile in a fresh process (``procs/quantile_cells``): ns per value, same bits.

    python scripts/bench.py quantile-cells --records 1825 --cells 16000 --repeat 5
"""

from __future__ import annotations

import argparse
from typing import Any

from .harness import Runner, bench_line, markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--records", type=int, default=1825, help="records of the tile")
    parser.add_argument("--cells", type=int, default=16000, help="cells of the tile")
    parser.add_argument("--repeat", type=int, default=5)


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time both paths in a fresh process of this checkout's hpcapp."""
    runner.precompile()
    args = ["--records", str(options.records), "--cells", str(options.cells)]
    args += ["--repeat", str(options.repeat)]
    return bench_line(runner.run([runner.python, *runner.proc("quantile_cells", *args)]))


def table(result: dict[str, Any]) -> str:
    """Return ns per value of both paths and whether their bits agree with numpy's."""
    row = [
        f"{result['records']} x {result['cells']} int16",
        f"{result['float64_numpy_ns']:.2f}",
        f"{result['packed_selected_ns']:.2f}",
        result["same_bits"],
    ]
    headers = ["tile", "decoded, numpy ns/value", "selected as stored ns/value", "same bits"]
    return markdown(headers, [row])
