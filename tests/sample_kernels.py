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
