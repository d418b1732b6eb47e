"""The rank's malloc tuning: freed large arrays are reused instead of faulted in afresh."""

import subprocess
import sys

import pytest

from hpcapp.parallel.heap import keep_freed_memory

CYCLES = """
import resource, sys
import numpy as np
from hpcapp.parallel.heap import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory({})
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):  # a chunk's arrays: allocated, written, freed, again and again
    a = np.empty(2_000_000)
    a[:] = 1.0
    b = a * 2.0
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CYCLES, mode], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_arrays_are_reused_not_faulted_in_again():
    pages_per_cycle = 2 * 2_000_000 * 8 // 4096
    plain, tuned = faults("plain"), faults("tuned")
    assert tuned < 2 * pages_per_cycle  # the first cycle's pages, then the same ones reused
    assert plain > 4 * tuned  # glibc's own thresholds: the pages are given back and faulted in


@pytest.mark.parametrize("name", ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "LD_PRELOAD"])
def test_a_users_own_malloc_settings_are_left_alone(name):
    assert keep_freed_memory({name: "2"}) is False
