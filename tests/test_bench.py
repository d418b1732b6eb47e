"""Smoke test of ``scripts/bench.py``: tiny sizes, one repetition, every contender present."""

import importlib.util
import json
import subprocess
import sys

import pytest
from helpers import REPO, clean_env

# Its own CI step (scripts/run_tests.py), beside the others: the time limit is a hang guard.
pytestmark = pytest.mark.bench

OPTIONAL = {"dask": "dask", "chart": "matplotlib"}


def test_bench_runs_every_contender(tmp_path):
    missing = {
        what for what, module in OPTIONAL.items() if importlib.util.find_spec(module) is None
    }
    if missing:
        print(f"note: {', '.join(sorted(missing))} not installed: the bench extra is missing")
    command = [sys.executable, str(REPO / "scripts" / "bench.py"), "--out", str(tmp_path)]
    # The contenders at 2 ranks only (montecarlo still runs at 1 and 2): a smoke test, not a
    # measurement.
    command += ["--size-gib", "0.004", "--ranks", "2", "--repeat", "1"]
    command += ["--mc-samples", "2100000", "--rss-gib", "0.002,0.008"]
    done = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Targets" in done.stdout

    results = json.loads((tmp_path / "bench-results.json").read_text())
    expected = {"read", "stats", "mpi-stats", "dask", "pool", "trivial", "mpi-sum"}
    expected -= {"dask"} & missing
    for shape in ("1-D float64", "2-D x8 float32"):
        for ranks in (2,):
            rows = {
                row["contender"]: row
                for row in results["contenders"]
                if row["shape"] == shape and row["ranks"] == ranks
            }
            assert set(rows) == expected, (shape, ranks)
            for row in rows.values():
                for key in ("wall", "inner"):
                    assert 0 < row[key]["min"] <= row[key]["median"] <= row[key]["max"]
                assert row["gbps_inner"] > 0 and row["gbps_wall"] > 0
    assert not [c for shape in results["shapes"] for c in shape["check_failures"]]
    assert [r["ranks"] for r in results["montecarlo"]["by_ranks"]] == [1, 2]
    assert all(r["efficiency_inner"] > 0 for r in results["montecarlo"]["by_ranks"])
    assert all(min(size["rss_mib"]) > 0 for size in results["rss"]["sizes"])
    assert results["startup"]["tiny_job"]["wall"]["median"] > 0
    assert all(t["verdict_inner"] or t["verdict_wall"] for t in results["targets"])
    assert ("chart" in results) == ("chart" not in missing)
    if "chart" in results:
        assert (tmp_path / "bench-chart.png").stat().st_size > 0
