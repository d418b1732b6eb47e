"""The ``montecarlo`` kernel: estimate pi from random points in the unit square.

It reads no input: each chunk draws its points from its own generator, seeded from the job's
seed and the chunk index, so the estimate is the same whatever the number of ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels.api import kernel
from hpcapp.kernels.hookspec import Partial


def finalize_pi(partial: Partial, params: Mapping[str, Any]) -> Partial:
    """Return the estimate of pi and its standard error from hits and samples."""
    samples = int(partial["samples"])
    fraction = int(partial["hits"]) / samples
    return {
        "estimate": np.float64(4.0 * fraction),
        "stderr": np.float64(4.0 * np.sqrt(fraction * (1.0 - fraction) / samples)),
        "hits": partial["hits"],
        "samples": partial["samples"],
    }


@kernel(finalize=finalize_pi, generates=True, rows_param="samples", seed_param="seed")
def montecarlo(
    rng: np.random.Generator, n_rows: int, samples: int = 10_000_000, seed: int = 0
) -> Partial:
    """Estimate pi from -p samples=N points (seeded by -p seed=S); CPU-bound, no input."""
    hits = 0
    # Draw in slices so memory stays small whatever chunk size the user picks.
    for start in range(0, n_rows, 1 << 18):
        n = min(1 << 18, n_rows - start)
        x = rng.random(n)
        y = rng.random(n)
        hits += int(np.count_nonzero(x * x + y * y < 1.0))
    return {"hits": np.int64(hits), "samples": np.int64(n_rows)}
