"""Live progress (a bar on a terminal, plain lines in logs, nothing with --quiet) and plots."""

import os
import subprocess

import numpy as np
from helpers import CLI_TIMEOUT, clean_env, cli_command, cli_here, run_cli, write_dataset

from hpcapp.parallel.progress import LinePolicy, format_seconds, render

SLOW = "import time\n\ndef slow(chunk):\n    time.sleep(0.01)\n    return {'s': chunk.sum()}\n"


def test_render_and_format():
    text = render(25, 100, 1_000_000, 8, elapsed=2.0)
    assert "25.0%" in text and "25/100 chunks" in text and "ETA 6s" in text
    assert "0.5 Mrows/s" in text and "0.004 GB/s" in text
    assert format_seconds(3725) == "1h02m" and format_seconds(185) == "3m05s"
    assert "100.0%" in render(4, 4, 10, 8, elapsed=1.0)


def run_slow(tmp_path, mode, *extra, n_ranks=1):
    """Run 120 chunks of 10 ms: under mpiexec on several ranks, in this process on one."""
    spec = write_dataset(tmp_path / "in.h5", np.arange(6000.0))
    kernel = tmp_path / "slow.py"
    kernel.write_text(SLOW)
    out = tmp_path / f"{mode}.h5"
    args = ["run", f"{kernel}:slow", spec, "-o", str(out), "--chunk-rows", "50", *extra]
    env = {"HPCAPP_PROGRESS": mode}
    done = run_cli(args, n_ranks, env=env) if n_ranks > 1 else cli_here(args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_plain_lines_each_tenth_but_a_few_seconds_apart():
    policy = LinePolicy(total_chunks=100, every=60.0, started=0.0, gap=5.0)
    # (seconds, chunks done, finished) -> whether a line is printed
    moments = [
        (1.0, 30, False, False),  # 30% at 1 s: too soon after the start
        (5.0, 31, False, True),  # 5 s: the first line
        (6.0, 60, False, False),  # a tenth crossed, but 1 s after the last line
        (10.0, 61, False, True),
        (14.0, 62, False, False),
        (15.0, 62, False, False),  # same tenth, 5 s later: nothing new to say
        (75.0, 63, False, True),  # 65 s since the last line: the periodic one (every 60 s)
        (80.0, 100, True, True),  # the end, after an earlier line
    ]
    for now, chunks, finished, expected in moments:
        assert policy.due(chunks, now, finished) == expected, (now, chunks)


def test_a_short_job_prints_no_progress_line():
    policy = LinePolicy(total_chunks=10, every=60.0, started=0.0, gap=5.0)
    assert [policy.due(n, n * 0.4, n == 10) for n in range(1, 11)] == [False] * 10
    # One that ends after the gap says so once.
    assert LinePolicy(total_chunks=10, every=60.0, started=0.0).due(10, 6.0, True)


def _without_batch_markers() -> dict[str, str]:
    env = clean_env()
    for name in ("CI", "SLURM_JOB_ID", "PBS_JOBID", "HPCAPP_PROGRESS"):
        env.pop(name, None)
    return {**env, "TERM": "xterm-256color"}


def _slow_job(tmp_path) -> list[str]:
    spec = write_dataset(tmp_path / "in.h5", np.arange(6000.0))
    kernel = tmp_path / "slow.py"
    kernel.write_text(SLOW)
    return ["run", f"{kernel}:slow", spec, "-o", str(tmp_path / "o.h5"), "--chunk-rows", "50"]


def test_no_bar_frames_under_a_pipe_even_with_a_terminal_type(tmp_path):
    """`mpiexec ... > log 2>&1`, `| tee`, a test: mpiexec's own stderr is no terminal."""
    done = subprocess.run(
        cli_command(_slow_job(tmp_path), 2),
        env=_without_batch_markers(),
        capture_output=True,
        timeout=CLI_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert b"\r" not in done.stderr and b"[###" not in done.stderr, done.stderr
    assert b"wrote" in done.stdout


def test_bar_when_mpiexec_writes_to_a_terminal(tmp_path):
    """mpiexec hands its ranks a pipe: the bar is drawn when mpiexec itself is on a terminal."""
    main_side, terminal = os.openpty()
    process = subprocess.Popen(
        cli_command(_slow_job(tmp_path), 2),
        env=_without_batch_markers(),
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    while True:  # read until the job closes the terminal (EIO) so it never blocks on a full one
        try:
            data = os.read(main_side, 4096)
        except OSError:
            break
        if not data:
            break
        shown += data
    os.close(main_side)
    assert process.wait(timeout=CLI_TIMEOUT) == 0, shown
    assert b"\r[" in shown and b"100.0% 120/120 chunks" in shown, shown
    assert b"hpcapp: progress" not in shown


def test_bar_on_a_terminal(tmp_path):
    stderr = run_slow(tmp_path, "bar")
    # (text mode turned the bar's carriage returns into newlines)
    frames = [line for line in stderr.splitlines() if line.startswith("[")]
    assert len(frames) >= 3 and "100.0% 120/120 chunks" in frames[-1]
    assert "ETA" in frames[-1] and "Mrows/s" in frames[-1] and "hpcapp: progress" not in stderr


def test_quiet_prints_no_progress(tmp_path):
    assert "progress" not in run_slow(tmp_path, "lines", "--quiet")


def test_show_plot_writes_a_png(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.random.default_rng(0).normal(size=(500, 2)))
    out = tmp_path / "out.h5"
    assert (
        cli_here(["run", "stats", spec, "-o", str(out), "-p", "range=-3,3", "-q"]).returncode == 0
    )
    for result in (out, tmp_path / "mc.h5"):
        if result.name == "mc.h5":
            args = ["run", "montecarlo", "-o", str(result), "-p", "samples=10000", "-q"]
            assert cli_here(args).returncode == 0
        png = tmp_path / f"{result.stem}.png"
        shown = cli_here(["show", str(result), "--plot", str(png)])
        assert shown.returncode == 0, shown.stderr
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
