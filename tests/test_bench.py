"""Smoke tests of the benchmarks: each registered one at tiny sizes through ``scripts/bench.py``.

Each runs ``python scripts/bench.py NAME --tiny --json FILE`` (a subprocess: the entry itself is
under test), checks what the benchmark itself checks (contenders agree, same bits) and that
``bench.py table FILE`` prints the table the run printed. The N-D ones are in test_bench_nd.py.
"""

from __future__ import annotations

import pytest
from helpers import REPO, bench, run_tiny

from scripts.benchlib.registry import BENCHMARKS

# Its own CI step (scripts/run_tests.py), beside the others: the time limit is a hang guard.
pytestmark = [pytest.mark.bench, pytest.mark.usefixtures("compiled_loops")]


def test_list_names_every_benchmark_once():
    done = bench("list")
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == [entry.name for entry in BENCHMARKS]
    assert len(set(names)) == len(names)


def test_an_unknown_benchmark_is_a_usage_error():
    done = bench("no-such-benchmark")
    assert done.returncode == 2
    assert "no benchmark 'no-such-benchmark'" in done.stderr


def test_every_benchmark_has_a_smoke_test():
    here = (REPO / "tests" / "test_bench.py").read_text() + (
        REPO / "tests" / "test_bench_nd.py"
    ).read_text()
    assert [entry.name for entry in BENCHMARKS if f'run_tiny("{entry.name}"' not in here] == []


def test_peers_runs_every_contender(tmp_path):
    result = run_tiny("peers", tmp_path, "--out", str(tmp_path))
    have_dask = "dask is not installed" not in " ".join(result["notes"])
    expected = {"read", "stats", "mpi-stats", "mpi-numba", "dask", "pool", "trivial", "mpi-sum"}
    expected -= set() if have_dask else {"dask"}
    for shape in ("1-D float64", "2-D x8 float32"):
        rows = {row["contender"]: row for row in result["contenders"] if row["shape"] == shape}
        assert set(rows) == expected, shape
        assert {row["ranks"] for row in rows.values()} == {2}
        for row in rows.values():
            for key in ("wall", "inner"):
                assert 0 < row[key]["min"] <= row[key]["median"] <= row[key]["max"]
            assert row["gbps_inner"] > 0 and row["gbps_wall"] > 0
    assert not [c for shape in result["shapes"] for c in shape["check_failures"]]
    assert [r["ranks"] for r in result["montecarlo"]["by_ranks"]] == [1, 2]
    assert all(r["efficiency_inner"] > 0 for r in result["montecarlo"]["by_ranks"])
    assert all(min(size["rss_mib"]) > 0 for size in result["rss"]["sizes"])
    assert result["startup"]["tiny_job"]["wall"]["median"] > 0
    assert all(t["verdict_inner"] or t["verdict_wall"] for t in result["targets"])
    if "chart" in result:
        assert (tmp_path / "bench-chart.png").stat().st_size > 0


def test_files_startup(tmp_path):
    result = run_tiny("files-startup", tmp_path)
    assert result["files"] == 20
    assert [row["ranks"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        # hpcapp's own start-up column lies inside the job's wall time.
        assert 0 < row["startup"] < row["wall"]
        assert 0 < row["one_file_startup"] < row["one_file_wall"]


def test_files_speed_means_agree(tmp_path):
    result = run_tiny("files-speed", tmp_path)
    hpcapp = [row for row in result["rows"] if "bitwise_equal_to_first" in row]
    assert len(hpcapp) == 2 and all(row["bitwise_equal_to_first"] for row in hpcapp)
    others = [row for row in result["rows"] if "max_relative_difference" in row]
    assert len(others) == 2 + result["ncra"]
    assert all(row["max_relative_difference"] < 1e-6 for row in others)


def test_compressed(tmp_path):
    result = run_tiny("compressed", tmp_path)
    storages = [row["storage"] for row in result["results"]]
    assert storages[:2] == ["contiguous", "gzip+shuffle"]
    for row in result["results"]:
        seconds = row["seconds"]
        for ranks in (1, 2):
            # The slowest rank's read phase is part of its read + compute + reduce.
            assert 0 < seconds[f"read@{ranks}"] <= seconds[f"inner@{ranks}"]
            assert seconds[f"inner@{ranks}"] < seconds[f"wall@{ranks}"]


def test_rows_checks_every_output(tmp_path):
    result = run_tiny("rows", tmp_path)
    assert [(row["tree"], row["ranks"]) for row in result["rows"]] == [("after", 1), ("after", 2)]
    for row in result["rows"]:
        assert row["wall"] <= row["wall_plus_fsync"]
        assert len(row["samples"]["wall"]) == 1 and row["no_rows_wall"] > 0


def test_schedule_gives_the_same_bits(tmp_path):
    result = run_tiny("schedule", tmp_path)
    assert [row["case"] for row in result["rows"]] == ["skewed"]
    assert all(
        row["same_bits"] and row["static"] > 0 and row["dynamic"] > 0 for row in result["rows"]
    )


def test_fetch(tmp_path):
    result = run_tiny("fetch", tmp_path)
    (report,) = result["runs"]
    assert report["ranks"] == 2
    kinds = {(row["counter"], row["kernel"]) for row in report["rows"]}
    assert kinds == {(c, k) for c in ("rma", "server") for k in ("holds GIL", "releases GIL")}
    for row in report["rows"]:
        # One asking rank at 2 ranks: its waits add up to at least the longest one.
        assert 0 < row["median_ms"] <= row["max_ms"] <= row["waited_ms_per_rank"] + 1e-9


def test_reduce(tmp_path):
    result = run_tiny("reduce", tmp_path)
    rows = result["rows"]
    assert [row["ranks"] for row in rows] == [1, 2]
    # Rank 0 receives log2(ranks) messages up the tree; none at one rank.
    assert [row["rank0_messages"] for row in rows] == [0, 1]
    assert all(row["chunks"] == 1000 and row["max_nodes_per_rank"] >= 1 for row in rows)


def test_startup(tmp_path):
    result = run_tiny("startup", tmp_path)
    modes = ("numpy", "numba", "prebuilt")
    assert [(row["ranks"], row["mode"]) for row in result["rows"]] == [
        (ranks, mode) for ranks in (1, 2) for mode in modes
    ]
    # Only the JIT mode imports numba: the prebuilt loops load without it.
    assert [row["numba_loaded"] for row in result["rows"][:3]] == [False, True, False]
    for row in result["rows"]:
        assert 0 < row["to_chunk_wall_median"] < row["launch_wall"]
        assert row["imports_wall_median"] > 0
        assert row["uss_mib_after"] <= row["pss_mib_after"] <= row["rss_mib_after"]


def test_exit(tmp_path):
    result = run_tiny("exit", tmp_path)
    assert [row["ranks"] for row in result["rows"]] == [1, 2]
    assert all(0 < row["outside"] < row["wall"] for row in result["rows"])


def test_stats_pass_gives_the_same_bits(tmp_path):
    result = run_tiny("stats-pass", tmp_path)
    assert len(result["rows"]) == 4
    assert all(row["same_bits"] is True for row in result["rows"])
    assert all(row["hist_same_bits"] is True for row in result["rows"])
    assert all(row["packed_same_bits"] is True for row in result["rows"])
    assert all(row["hand_fold_ns"] > 0 for row in result["rows"])
    phases = result["phases"]  # the 2-D peers chunk, phase by phase, and the hand fold
    assert phases["rows"] == 16384 and phases["cols"] == 8
    for phase in ("read", "hpcapp_loop", "hpcapp_kernel", "hpcapp_merge", "hand_fold"):
        assert phases[f"{phase}_ms"] > 0


def test_quantile_cells_gives_the_same_bits(tmp_path):
    result = run_tiny("quantile-cells", tmp_path)
    assert result["same_bits"] is True
    assert result["packed_selected_ns"] > 0 and result["float64_numpy_ns"] > 0


def test_versions_compares_two_trees_and_their_results(tmp_path):
    # The same tree as "before": every job runs with both, and their result bytes must agree.
    result = run_tiny("versions", tmp_path, "--before", str(REPO))
    assert result["trees"] == ["before", "after"]
    assert len(result["jobs"]) == 4
    for row in result["jobs"]:
        assert len(row["runs"]["before"]) == len(row["runs"]["after"]) == 1
        assert row["ratio"] == row["after"] / row["before"] > 0
