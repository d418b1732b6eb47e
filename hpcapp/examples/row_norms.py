"""An example "map" kernel: one output row per input row, written in input order.

    mpiexec -n 4 python -m hpcapp run hpcapp.examples.row_norms:row_norms \\
        data.h5:/x -o norms.h5 --compression gzip

``/result/norm`` gets one value per input row; ``/result/total`` is reduced as usual.
"""

import numpy as np

import hpcapp


@hpcapp.kernel(per_row=("norm", "scaled"), combine="sum")
def row_norms(chunk, scale=1.0):
    """Per row: its Euclidean norm and the row times ``scale``; in total: the sum of norms."""
    values = np.asarray(chunk, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    norm = np.sqrt(np.einsum("ij,ij->i", values, values))
    return {"norm": norm, "scaled": (values * scale).astype(np.float32), "total": norm.sum()}
