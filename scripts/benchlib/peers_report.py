"""The ``peers`` benchmark's summaries, the issue's targets, its tables and its chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .harness import GIB, markdown, spread
from .peers_extra import HEAVY_MODULES, NO_MPI_COMMANDS

CONTENDERS = {
    "read": "raw h5py read (I/O limit)",
    "stats": "hpcapp stats",
    "mpi-stats": "hand-written mpi4py stats",
    "mpi-numba": "hand-tuned numba + mpi4py stats",
    "dask": "dask array (threads)",
    "pool": "multiprocessing.Pool",
    "trivial": "hpcapp trivial kernel",
    "mpi-sum": "hand-written mpi4py sums",
}
# The targets for each shape and rank count: (name, contender, reference, op, limit).
# The measured ratio is reference time / contender time (a throughput ratio), except for the
# overhead target, which is contender time / reference time (a cost ratio).
SPEED_TARGETS = (
    ("stats throughput / raw read", "stats", "read", ">=", 0.75),
    ("stats speed-up over dask", "stats", "dask", ">=", 3.0),
    ("stats speed-up over Pool", "stats", "pool", ">=", 3.0),
    ("stats speed-up over hand-written", "stats", "mpi-stats", ">=", 1.0),
    ("stats speed-up over hand-tuned numba", "stats", "mpi-numba", ">=", 1.1),
)
OVERHEAD_TARGET = ("trivial kernel cost / hand-written", "trivial", "mpi-sum", "<=", 1.05)
# The README's table: GB/s of input on each contender's own clock.
README_COLUMNS = {
    "read": "raw read",
    "stats": "hpcapp stats",
    "mpi-stats": "hand-written mpi4py",
    "mpi-numba": "hand-tuned numba",
    "dask": "Dask",
    "pool": "Pool",
}


def summarise(shape: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one row per (rank count, contender): medians, spreads, GB/s, ratio to the read."""
    rows = []
    for n_ranks in sorted({r["ranks"] for r in shape["runs"]}):
        runs = [r for r in shape["runs"] if r["ranks"] == n_ranks]
        read = {
            k: statistics.median(r[k] for r in runs if r["contender"] == "read")
            for k in ("wall", "inner")
        }
        for key in CONTENDERS:
            mine = [r for r in runs if r["contender"] == key]
            if not mine:
                continue
            wall, inner = spread([r["wall"] for r in mine]), spread([r["inner"] for r in mine])
            middle = sorted(mine, key=lambda r: r["inner"])[(len(mine) - 1) // 2]
            rows.append(
                {
                    "shape": shape["shape"],
                    "ranks": n_ranks,
                    "contender": key,
                    "label": CONTENDERS[key],
                    "wall": wall,
                    "inner": inner,
                    "rank_seconds": middle.get("rank_seconds"),  # of the median repetition
                    "gbps_inner": shape["bytes"] / inner["median"] / 1e9,
                    "gbps_wall": shape["bytes"] / wall["median"] / 1e9,
                    "read_ratio_inner": read["inner"] / inner["median"],
                    "read_ratio_wall": read["wall"] / wall["median"],
                }
            )
    return rows


def verdict(value: float | None, op: str, limit: float) -> str | None:
    """Return PASS or FAIL for ``value op limit`` (None when not measured)."""
    if value is None:
        return None
    return "PASS" if (value >= limit if op == ">=" else value <= limit) else "FAIL"


def target(
    name: str, where: str, op: str, limit: float, inner: float | None, wall: float | None
) -> dict[str, Any]:
    """Return one target row with its verdicts on inner and on wall time."""
    return {
        "target": name,
        "where": where,
        "op": op,
        "limit": limit,
        "inner": inner,
        "wall": wall,
        "verdict_inner": verdict(inner, op, limit),
        "verdict_wall": verdict(wall, op, limit),
    }


def speed_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate the issue's per-shape targets at every rank count measured."""
    found = {(r["shape"], r["ranks"], r["contender"]): r for r in rows}
    targets = []
    for shape, n_ranks in dict.fromkeys((r["shape"], r["ranks"]) for r in rows):
        where = f"{shape}, {n_ranks} ranks"
        for name, key, reference, op, limit in (*SPEED_TARGETS, OVERHEAD_TARGET):
            mine, theirs = found.get((shape, n_ranks, key)), found.get((shape, n_ranks, reference))
            if mine is None or theirs is None:
                continue
            if key == "trivial":  # a cost ratio: lower is better
                ratios = [mine[t]["median"] / theirs[t]["median"] for t in ("inner", "wall")]
            else:  # a throughput ratio: higher is better
                ratios = [theirs[t]["median"] / mine[t]["median"] for t in ("inner", "wall")]
            targets.append(target(name, where, op, limit, *ratios))
    return targets


def other_targets(mc: dict[str, Any], rss: dict[str, Any], startup: dict[str, Any]) -> list:
    """Evaluate montecarlo efficiency, memory growth and start-up against the issue."""
    targets = []
    two = next((r for r in mc["by_ranks"] if r["ranks"] == 2), None)
    if two:
        name = "montecarlo efficiency 1 -> 2 ranks"
        targets.append(
            target(name, "", ">=", 0.95, two["efficiency_inner"], two["efficiency_wall"])
        )
    sizes = " -> ".join(f"{s['gib']:g}" for s in rss["sizes"])
    where = f"{sizes} GiB, {rss['ranks']} ranks"
    targets.append(target("peak RSS growth (max rank)", where, "<=", 0.10, None, rss["growth"]))
    for name in NO_MPI_COMMANDS:
        seconds = startup[name]["wall"]["median"]
        targets.append(target(f"`hpcapp {name}` seconds", "", "<=", 0.2, None, seconds))
        heavy = startup[name]["imports_heavy"]
        row = target(f"`hpcapp {name}` heavy imports", "", "<=", 0, None, len(heavy))
        row["where"] = ", ".join(heavy) or f"none of {', '.join(HEAVY_MODULES)}"
        targets.append(row)
    seconds = startup["tiny_job"]["wall"]["median"]
    targets.append(target("10^4-row job wall seconds", "2 ranks", "<=", 1.5, None, seconds))
    return targets


# ---------------------------------------------------------------- printing and drawing


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Return a plain-text table with columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def seconds_cell(value: dict[str, float]) -> str:
    """Format ``median (min-max)`` seconds."""
    return f"{value['median']:.3f} ({value['min']:.3f}-{value['max']:.3f})"


def contender_table(shape: dict[str, Any], rows: list[dict[str, Any]], n_ranks: int) -> str:
    """Return the table of one shape at one rank count."""
    title = (
        f"{shape['shape']}: {shape['rows']:,} rows, {shape['bytes'] / GIB:.3g} GiB, {n_ranks} "
        f"ranks/workers, chunks of {shape['chunk_rows']:,} rows; page-cache resident"
    )
    cells = []
    for r in rows:
        if r["shape"] != shape["shape"] or r["ranks"] != n_ranks:
            continue
        per_rank = r["rank_seconds"]
        cells.append(
            [
                r["label"],
                seconds_cell(r["wall"]),
                seconds_cell(r["inner"]),
                f"{per_rank['min']:.3f}/{per_rank['mean']:.3f}/{per_rank['max']:.3f}"
                if per_rank
                else "-",
                f"{r['gbps_inner']:.2f}",
                f"{r['gbps_wall']:.2f}",
                f"{r['read_ratio_inner']:.2f}",
                f"{r['read_ratio_wall']:.2f}",
            ]
        )
    headers = ["contender", "wall s: median (min-max)", "inner s: median (min-max)"]
    headers += ["per-rank s min/mean/max", "GB/s inner", "GB/s wall", "x read inner"]
    headers += ["x read wall"]
    return f"{title}\n{text_table(headers, cells)}"


def ratio_cell(value: float | None) -> str:
    """Format a measured ratio or value."""
    return "-" if value is None else f"{value:.3g}"


TARGET_HEADERS = ["target (issue 5)", "where", "inner", "wall", "needs", "inner", "wall"]


def target_cells(targets: list[dict[str, Any]]) -> list[list[str]]:
    """Return the rows of the targets table: measured values and PASS/FAIL on each clock."""
    return [
        [
            t["target"],
            t["where"] or "-",
            ratio_cell(t["inner"]),
            ratio_cell(t["wall"]),
            f"{t['op']} {t['limit']:g}",
            t["verdict_inner"] or "-",
            t["verdict_wall"] or "-",
        ]
        for t in targets
    ]


def targets_table(targets: list[dict[str, Any]]) -> str:
    """Return the table of the issue's targets with PASS/FAIL on inner and on wall time."""
    title = "Targets: measured on inner time (throughput) and on wall time (whole job)"
    return f"{title}\n{text_table(TARGET_HEADERS, target_cells(targets))}"


def extras_table(mc: dict[str, Any], rss: dict[str, Any], startup: dict[str, Any]) -> str:
    """Return the tables of montecarlo scaling, peak RSS and start-up."""
    mc_cells = [
        [
            str(r["ranks"]),
            seconds_cell(r["wall"]),
            seconds_cell(r["inner"]),
            f"{r['efficiency_inner']:.3f}",
            f"{r['efficiency_wall']:.3f}",
        ]
        for r in mc["by_ranks"]
    ]
    headers = ["ranks", "wall s", "inner s", "efficiency inner", "efficiency wall"]
    parts = [f"montecarlo, {mc['samples']:,} samples\n{text_table(headers, mc_cells)}"]
    rss_cells = [
        [f"{s['gib']:g}", " / ".join(f"{m:.1f}" for m in s["rss_mib"]), f"{max(s['rss_mib']):.1f}"]
        for s in rss["sizes"]
    ]
    headers = ["dataset GiB", "peak RSS per rank, MiB", "max"]
    parts.append(f"hpcapp stats peak RSS, {rss['ranks']} ranks\n{text_table(headers, rss_cells)}")
    start_cells = [
        [
            f"hpcapp {name}",
            seconds_cell(startup[name]["wall"]),
            ", ".join(startup[name]["imports_heavy"]) or "none",
        ]
        for name in NO_MPI_COMMANDS
    ]
    start_cells.append(
        ["10^4-row stats job, 2 ranks", seconds_cell(startup["tiny_job"]["wall"]), ""]
    )
    headers = ["start-up", "wall s", f"imports {'/'.join(HEAVY_MODULES)}"]
    parts.append(text_table(headers, start_cells))
    return "\n\n".join(parts)


def error_bar(row: dict[str, Any]) -> tuple[float, float]:
    """Return how far the slowest and fastest repetitions fall below and above the median GB/s."""
    gbps, inner = row["gbps_inner"], row["inner"]
    slowest, fastest = gbps * inner["median"] / inner["max"], gbps * inner["median"] / inner["min"]
    return max(0.0, gbps - slowest), max(0.0, fastest - gbps)


def draw(path: Path, rows: list[dict[str, Any]], mc: dict[str, Any]) -> None:
    """Draw GB/s per contender (one panel per shape and rank count) and montecarlo efficiency."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["shape"], r["ranks"]) for r in rows))
    n_cols = min(3, len(panels) + 1)
    n_rows = -(-(len(panels) + 1) // n_cols)
    fig, grid = plt.subplots(n_rows, n_cols, figsize=(5.5 * n_cols, 4 * n_rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(panels) + 1 :]:
        ax.set_visible(False)
    for ax, (shape, n_ranks) in zip(axes, panels, strict=False):
        mine = [r for r in rows if r["shape"] == shape and r["ranks"] == n_ranks]
        labels = [r["label"] for r in mine]
        bars = list(zip(*(error_bar(r) for r in mine), strict=True))
        inner = [r["gbps_inner"] for r in mine]
        ax.barh(labels, inner, xerr=bars, color="tab:blue", alpha=0.8, label="inner")
        ax.barh(labels, [r["gbps_wall"] for r in mine], color="tab:orange", alpha=0.7, label="wall")
        ax.axvline(inner[labels.index(CONTENDERS["read"])], color="grey", linestyle=":")
        ax.invert_yaxis()
        ax.set_title(f"{shape}, {n_ranks} ranks")
        ax.set_xlabel("GB/s (dotted: raw read, inner)")
        ax.legend(loc="lower right")
    ax = axes[len(panels)]
    ranks = [r["ranks"] for r in mc["by_ranks"]]
    ax.plot(ranks, [r["efficiency_inner"] for r in mc["by_ranks"]], "o-", label="inner")
    ax.plot(ranks, [r["efficiency_wall"] for r in mc["by_ranks"]], "s--", label="wall")
    ax.axhline(0.95, color="grey", linestyle=":", label="target 0.95")
    ax.set_xticks(ranks)
    ax.set_ylim(0, 1.1)
    ax.set_title("montecarlo parallel efficiency")
    ax.set_xlabel("ranks")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(result: dict[str, Any]) -> str:
    """Return the detailed plain-text tables of a run."""
    parts = []
    for shape in result["shapes"]:
        for n_ranks in result["ranks"]:
            parts.append(contender_table(shape, result["contenders"], n_ranks))
    parts.append(extras_table(result["montecarlo"], result["rss"], result["startup"]))
    parts.append(targets_table(result["targets"]))
    parts.append("\n".join(f"note: {note}" for note in result["notes"]))
    return "\n\n".join(parts)


def table(result: dict[str, Any]) -> str:
    """Return the README's tables: GB/s on each contender's own clock, and the targets."""
    sizes = {shape["shape"]: shape["bytes"] / GIB for shape in result["shapes"]}
    gib = f"{max(sizes.values()):.3g}"
    found = {(r["shape"], r["ranks"], r["contender"]): r for r in result["contenders"]}
    cells = []
    for shape, n_ranks in dict.fromkeys((r["shape"], r["ranks"]) for r in result["contenders"]):
        row = [f"{shape}, {n_ranks} rank{'s' * (n_ranks > 1)}"]
        for key in README_COLUMNS:
            mine = found.get((shape, n_ranks, key))
            row.append(f"{mine['gbps_inner']:.2f}" if mine else "-")
        cells.append(row)
    speeds = markdown([f"{gib} GiB, page cache", *README_COLUMNS.values()], cells)
    return f"{speeds}\n\n{markdown(TARGET_HEADERS, target_cells(result['targets']))}"
