"""Live progress (a bar on a terminal, plain lines in logs, nothing with --quiet) and plots."""

import numpy as np
from helpers import cli_here, run_cli, write_dataset

from hpcapp.parallel.progress import format_seconds, render

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


def test_plain_lines_every_ten_percent_and_at_the_end(tmp_path):
    stderr = run_slow(tmp_path, "lines", "--progress-every", "1000", n_ranks=3)
    lines = [line for line in stderr.splitlines() if line.startswith("hpcapp: progress")]
    # Updates reach rank 0 a few times a second, so a short job may skip some tenths.
    assert 3 <= len(lines) <= 12, stderr
    percents = [float(line.split("]")[1].split("%")[0]) for line in lines]
    assert percents == sorted(percents) and len(set(p // 10 for p in percents)) == len(lines)
    assert "100.0% 120/120 chunks" in lines[-1]
    assert stderr.count("hpcapp: progress") == len(lines)  # rank 0 only


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
