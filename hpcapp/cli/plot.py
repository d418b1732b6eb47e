"""``hpcapp show --plot FILE.png``: draw a result file (matplotlib, imported only here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.ncfile import text
from hpcapp.io.results import read_timing, result_variables


def plot_file(path: str, png: str) -> None:
    """Draw the results of ``path`` (histograms, estimate, or values) and its per-rank timing."""
    import h5py

    try:
        import matplotlib
    except ImportError:
        raise UsageError(
            "show --plot needs matplotlib: pip install 'hpcapp[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    with h5py.File(path, "r", locking=False) as h5:
        results = {
            key: dataset[()]
            for key, dataset in result_variables(h5).items()
            if dataset.size <= 10_000_000
        }
        timing, columns = read_timing(h5) or (None, [])
        title = f"hpcapp {text(h5.attrs.get('kernel', ''))} on {text(h5.attrs.get('input', ''))}"
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    _draw_results(left, results)
    _draw_timing(right, timing, columns)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def _draw_results(axes: Any, results: dict[str, np.ndarray]) -> None:
    """Histograms per column (stats), the estimate with its error (montecarlo), else values."""
    if "hist" in results and "hist_edges" in results:
        edges = results["hist_edges"]
        counts = np.atleast_2d(results["hist"])
        for col, row in enumerate(counts):
            axes.stairs(row, edges, label=f"column {col}")
        axes.set_xlabel("value")
        axes.set_ylabel("count")
        axes.set_title("histogram per column")
        if len(counts) > 1:
            axes.legend(fontsize="small")
    elif "estimate" in results and "stderr" in results:
        estimate, error = float(results["estimate"]), float(results["stderr"])
        axes.errorbar(
            [0],
            [estimate],
            yerr=[3 * error],
            fmt="o",
            capsize=8,
            label="estimate, 3 standard errors",
        )
        axes.axhline(np.pi, color="grey", linestyle="--", label="pi")
        axes.set_xticks([])
        axes.set_title(f"estimate {estimate:.6f} ± {error:.2g}")
        axes.legend()
    else:
        for key, value in results.items():
            flat = np.ravel(value).astype(np.float64)
            axes.plot(flat[:100_000], label=key)
        axes.set_title("results")
        axes.legend(fontsize="small")


def _draw_timing(axes: Any, timing: np.ndarray | None, columns: list[str]) -> None:
    """A stacked bar per rank: seconds in each phase (load imbalance shows at a glance)."""
    if timing is None:
        axes.set_visible(False)
        return
    ranks = np.arange(len(timing))
    bottom = np.zeros(len(timing))
    for index, name in enumerate(columns):
        if name == "rows":
            continue
        axes.bar(ranks, timing[:, index], bottom=bottom, label=name)
        bottom += timing[:, index]
    if len(ranks) <= 32:
        axes.set_xticks(ranks)
    axes.set_xlabel("rank")
    axes.set_ylabel("seconds")
    axes.set_title("time per rank and phase")
    axes.legend(fontsize="small")
