"""Smoke test of ``scripts/bench_nd.py memory``: tiny grid, both rank counts, estimate printed."""

import json
import subprocess
import sys

from conftest import REPO, clean_env


def test_bench_nd_memory_reports_peak_and_estimate(tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "bench_nd.py"), "memory", str(tmp_path)]
    command += ["--steps", "6", "--lat", "5", "--lon", "7", "--bins", "4", "--chunk-rows", "2"]
    done = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line[6:]) for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    assert [row["ranks"] for row in rows] == [1, 2]
    for row in rows:
        assert row["cells"] == 35 and row["chunks"] == 3
        # 35 cells x (5 float64 moments + 2 float32 extremes + 4 int64 bins) bytes.
        assert row["partial_mib"] * 2**20 == 35 * (5 * 8 + 2 * 4 + 4 * 8)
        assert len(row["peak_rss_mib_per_rank"]) == row["ranks"]
        assert all(peak > 10 for peak in row["peak_rss_mib_per_rank"])
