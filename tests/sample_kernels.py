"""Kernels of the tests, as the source of kernel files (written beside the test's data)."""

import numpy as np

# Per-row outputs of odd dtypes and shapes (big-endian, bool, int8, float16, 2-D), and a total.
MANY_KERNEL = """
import os
import time
import numpy as np
import hpcapp

@hpcapp.kernel(per_row=("double", "flag", "swapped", "small", "half"), combine="sum")
def many(chunk, delay=0.0):
    # A run that only finishes (a resume) skips the sleeping: no parameter of the job changes.
    time.sleep(float(os.environ.get("HPCAPP_TEST_DELAY", delay)))
    x = np.asarray(chunk, np.float64)
    return {
        "double": x * 2,
        "flag": x[:, 0] > 0.5,
        "swapped": x.astype(">f8"),
        "small": np.rint(x * 50).astype(np.int8),
        "half": x[:, 1:].astype(np.float16),
        "n": np.int64(len(x)),
    }
"""


def many_reference(data: np.ndarray) -> dict:
    """Return what ``many`` gives for the whole of ``data`` at once."""
    namespace: dict = {}
    exec(MANY_KERNEL, namespace)
    return namespace["many"](data)


# Kernels declaring coords=True (issue 21): latitudes, dates, rows and weights of each chunk.
COORDS_KERNELS = '''
import numpy as np
import hpcapp


def finish_weighted(partial, params):
    return {**partial, "mean": partial["wsum"] / partial["wts"]}


@hpcapp.kernel(coords=True, finalize=finish_weighted)
def coslat(chunk, coords):
    """The cos(lat)-weighted sum and mean of the field, from the chunk's latitudes."""
    lat = coords.values["lat"]
    shape = [1] * chunk.ndim
    shape[coords.dims.index("lat")] = len(lat)
    x = np.asarray(chunk, np.float64)
    w = np.broadcast_to(np.cos(np.deg2rad(lat)).reshape(shape), x.shape)
    valid = ~np.isnan(x)
    return {"wsum": np.where(valid, x * w, 0.0).sum(), "wts": np.where(valid, w, 0.0).sum()}


@hpcapp.kernel(coords=True, finalize=finish_weighted)
def weighted(chunk, coords):
    """The --weights weighted sum and mean of the field (cells with a value)."""
    x = np.asarray(chunk, np.float64)
    w = np.broadcast_to(coords.weights, x.shape)
    valid = ~np.isnan(x)
    return {"wsum": np.where(valid, x * w, 0.0).sum(), "wts": np.where(valid, w, 0.0).sum()}


@hpcapp.kernel(coords=True, per_row=("doy", "row"), combine={"first": "min", "last": "max"})
def january(chunk, coords):
    """Records in January; each record's day of the year and index; the rows seen."""
    return {
        "january": np.int64(sum(t.month == 1 for t in coords.times)),
        "doy": np.array([t.dayofyr for t in coords.times], np.int64),
        "row": np.arange(*coords.rows, dtype=np.int64),
        "first": np.int64(coords.rows[0]),
        "last": np.int64(coords.rows[1]),
    }


@hpcapp.kernel("max", coords=True)
def described(chunk, coords):
    """What the coordinates hold: dates, weights, dims without a coordinate variable."""
    return {
        "dated": np.int64(coords.times is not None),
        "weighted": np.int64(coords.weights is not None),
        "bare": np.int64(sum(v is None for v in coords.values.values())),
        "dims": np.int64(len(coords.dims)),
    }


@hpcapp.kernel(coords=True)
def starts(chunk, coords):
    """Wrong on purpose: the sum of the chunks' first rows depends on how rows are cut."""
    return {"start": np.int64(coords.rows[0])}
'''
