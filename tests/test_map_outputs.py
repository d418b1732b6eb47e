"""Per-row ("map") outputs: input order, any rank count and schedule, bounded rank-0 memory."""

import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import clean_env, cli_command, read_results, run_cli, sample_data, write_dataset

KERNEL = "hpcapp.examples.row_norms:row_norms"

MEMORY_KERNEL = """
import resource
import numpy as np
import hpcapp

def report_rss(partial):
    # finalize runs on rank 0 once everything is written: its peak RSS bounds the whole run.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**partial, "rank0_maxrss_kib": np.int64(peak)}

@hpcapp.kernel(per_row=("wide",), finalize=report_rss)
def widen(chunk):
    wide = np.repeat(np.asarray(chunk, np.float64)[:, None], 16, axis=1)
    return {"wide": wide, "n": np.int64(len(chunk))}
"""


def result_bytes(path):
    return {key: value.tobytes() for key, value in read_results(path).items()}


@pytest.mark.parametrize("cols", [None, 3])
def test_map_output_matches_numpy_on_any_rank_count_and_schedule(tmp_path, cols):
    data = sample_data(3001, cols, "float64")
    spec = write_dataset(tmp_path / "in.h5", data)
    outputs = []
    for n_ranks, schedule in ((1, "static"), (2, "static"), (3, "dynamic"), (4, "static")):
        out = tmp_path / f"o{n_ranks}.h5"
        done = run_cli(
            [
                "run",
                KERNEL,
                spec,
                "-o",
                str(out),
                "--chunk-rows",
                "97",
                "-p",
                "scale=2",
                "--schedule",
                schedule,
                "--compression",
                "gzip",
            ],
            n_ranks,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(result_bytes(out))
    assert all(o == outputs[0] for o in outputs[1:])
    got = read_results(tmp_path / "o3.h5")
    columns = data.reshape(len(data), -1)
    np.testing.assert_allclose(got["norm"], np.linalg.norm(columns, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(got["scaled"], (columns * 2).astype(np.float32))
    np.testing.assert_allclose(got["total"], np.linalg.norm(columns, axis=1).sum(), rtol=1e-12)
    with h5py.File(tmp_path / "o3.h5") as h5:
        assert h5["result/norm"].compression == "gzip"
        assert h5["result/norm"].chunks == (97,)


def test_rank0_memory_does_not_grow_with_the_output(tmp_path):
    kernel_file = tmp_path / "widen.py"
    kernel_file.write_text(MEMORY_KERNEL)
    peaks = []
    for rows in (200_000, 1_600_000):  # per-row output: 25.6 MB, then 204.8 MB
        spec = write_dataset(tmp_path / f"in{rows}.h5", np.arange(rows, dtype=np.float64))
        out = tmp_path / f"o{rows}.h5"
        done = run_cli(
            ["run", f"{kernel_file}:widen", spec, "-o", str(out), "--chunk-rows", "20000"], 3
        )
        assert done.returncode == 0, done.stderr
        got = read_results(out)
        assert got["n"] == rows and got["wide"].shape == (rows, 16)
        np.testing.assert_array_equal(got["wide"][:, 5], np.arange(rows))
        peaks.append(int(got["rank0_maxrss_kib"]))
    # 8x more output (+180 MB) may add at most a few chunks' worth (2.5 MB each) on rank 0.
    assert peaks[1] - peaks[0] < 40_000, peaks


def test_map_output_resumes_after_an_interrupt(tmp_path):
    data = sample_data(8000, 2, "float64")
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel_file = tmp_path / "slow_norms.py"
    kernel_file.write_text(
        "import time\nfrom hpcapp.examples.row_norms import row_norms\nimport hpcapp\n\n"
        "@hpcapp.kernel(per_row=('norm', 'scaled'))\n"
        "def slow(chunk, delay=0.03):\n    time.sleep(delay)\n    return row_norms(chunk)\n"
    )
    args = ["run", f"{kernel_file}:slow", spec, "--chunk-rows", "40"]
    reference = tmp_path / "ref.h5"
    assert run_cli([*args, "-o", str(reference), "-p", "delay=0"], 1).returncode == 0
    out = tmp_path / "out.h5"
    process = subprocess.Popen(
        cli_command([*args, "-o", str(out)], 3),
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (tmp_path / "out.h5.checkpoint" / "rows.h5").exists():
        assert process.poll() is None
        time.sleep(0.01)
    time.sleep(0.8)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr
    resumed = run_cli([*args, "-o", str(out), "--resume"], 2)
    assert resumed.returncode == 0, resumed.stderr
    assert result_bytes(out) == result_bytes(reference)


def test_wrong_row_count_is_a_clear_error(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(100.0))
    kernel_file = tmp_path / "bad.py"
    kernel_file.write_text(
        "import hpcapp\n\n@hpcapp.kernel(per_row=('x',))\ndef bad(chunk):\n"
        "    return {'x': chunk[:-1]}\n"
    )
    done = run_cli(
        ["run", f"{kernel_file}:bad", spec, "-o", str(tmp_path / "o.h5"), "--chunk-rows", "10"], 2
    )
    assert done.returncode == 1 and "must have 10 rows" in done.stderr
