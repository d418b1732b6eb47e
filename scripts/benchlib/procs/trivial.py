"""The trivial user kernel of ``peers``' framework-overhead test (no hpcapp import needed).

mpiexec -n N python -m hpcapp run scripts/benchlib/procs/trivial.py:trivial FILE.h5:/x -o OUT.h5
"""

from __future__ import annotations

import numpy as np


def trivial(chunk: np.ndarray) -> dict[str, np.ndarray]:
    """Return the chunk's per-column sums; hpcapp's default combine adds them up."""
    return {"s": chunk.sum(axis=0)}
