"""An example user kernel: how often, and by how much, each column exceeds a threshold.

Run it as a module or as a file::

    mpiexec -n 4 python -m hpcapp run hpcapp.examples.exceedances:exceedances \\
        data.h5:/temperature -o above.h5 -p threshold=0.9
    mpiexec -n 4 python -m hpcapp run path/to/exceedances.py:exceedances ...
"""

import numpy as np

import hpcapp


def finalize(partial, params):
    """Turn counts and sums into the mean excess over the threshold (once, on rank 0)."""
    n_above = partial["n_above"]
    mean_excess = np.where(n_above > 0, partial["excess"] / np.maximum(n_above, 1), np.nan)
    return {**partial, "mean_excess": mean_excess}


@hpcapp.kernel(combine={"n_above": "sum", "excess": "sum", "peak": "max"}, finalize=finalize)
def exceedances(chunk, threshold=0.5):
    """Per column: values above ``threshold``, their summed excess, and the peak value."""
    values = np.asarray(chunk, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    above = values > threshold  # NaN compares False: NaNs never count as exceedances
    excess = np.where(above, values - threshold, 0.0)
    return {
        "n_above": above.sum(axis=0, dtype=np.int64),
        "excess": excess.sum(axis=0),
        "peak": np.fmax.reduce(values, axis=0),
    }
