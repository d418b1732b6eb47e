"""Command-line parsing and config files: pure, no MPI."""

import os
import re
import subprocess
import sys

import pytest
from conftest import CLI_TIMEOUT, REPO, clean_env, cli_command, mpiexec, run_cli, write_dataset

from hpcapp import errors, launch
from hpcapp.cli import EXIT_MEANINGS, exit_codes_text, parse, plural
from hpcapp.config import parse_value
from hpcapp.errors import UsageError
from hpcapp.kernels.registry import load_kernel


@pytest.mark.parametrize(
    "text,value",
    [
        ("64", 64),
        ("-3", -3),
        ("0.5", 0.5),
        ("1e-3", 1e-3),
        ("0,1", [0, 1]),
        ("-1.5,2", [-1.5, 2]),
        ("true", True),
        ("False", False),
        ("abc", "abc"),
        ("inf", float("inf")),
    ],
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_run_command_line():
    command = parse(
        [
            "run",
            "stats",
            "d.h5:/x",
            "-o",
            "o.h5",
            "--chunk-rows",
            "10",
            "-p",
            "bins=8",
            "-p",
            "range=0,1",
            "--overwrite",
        ]
    )
    config = command.config
    assert command.name == "run"
    assert (config.kernel, config.input, config.output) == ("stats", "d.h5:/x", "o.h5")
    assert config.chunk_rows == 10 and config.overwrite and config.distribute == "read"
    assert config.params == {"bins": 8, "range": [0, 1]}


def test_no_arguments_is_the_demo():
    assert parse([]).name == "demo"


def test_config_file_and_command_line_precedence(tmp_path):
    toml = tmp_path / "job.toml"
    toml.write_text(
        'kernel = "stats"\ninput = "d.h5:/x"\noutput = "from_file.h5"\nchunk_rows = 100\n'
        'distribute = "scatter"\n[params]\nbins = 4\nrange = [0, 2]\n'
    )
    config = parse(["run", "--config", str(toml), "-o", "cli.h5", "-p", "bins=9"]).config
    assert config.output == "cli.h5" and config.chunk_rows == 100
    assert config.params == {"bins": 9, "range": [0, 2]} and config.distribute == "scatter"


@pytest.mark.parametrize(
    "content,message",
    [
        ("kernel = ", "not valid TOML"),
        ('kernel = "stats"\nchunkrows = 5\n', "unknown key 'chunkrows'"),
        ('chunk_rows = "many"\n', "must be a int"),
    ],
)
def test_bad_config_files(tmp_path, content, message):
    toml = tmp_path / "job.toml"
    toml.write_text(content)
    with pytest.raises(UsageError, match=message):
        parse(["run", "stats", "d.h5:/x", "-o", "o.h5", "--config", str(toml)])


def test_bad_toml_names_the_line(tmp_path):
    toml = tmp_path / "job.toml"
    toml.write_text('kernel = "stats"\noutput = \n')
    with pytest.raises(UsageError, match="line 2"):
        parse(["run", "--config", str(toml)])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "stats", "d.h5:/x", "-o", "o.h5", "--chunk-rows", "0"], "--chunk-rows"),
        (["run", "stats", "d.h5:/x", "-o", "o.h5", "--chunk-rows", "x"], "invalid int"),
        (["run", "stats", "d.h5:/x"], "-o OUT.h5"),
        (["run", "stats", "d.h5:/x", "-o", "o.h5", "-p", "bins"], "KEY=VALUE"),
        (["run", "stats", "d.h5:/x", "-o", "o.h5", "--config", "/nonexistent.toml"], "does not"),
        (["frobnicate"], "invalid choice"),
        (["generate", "d.h5:/x"], "--rows"),
    ],
)
def test_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        parse(argv)


def test_help_and_kernels_do_not_import_mpi_or_h5py():
    code = (
        "import sys, contextlib, io\n"
        "from hpcapp.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['kernels']) == 0\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('mpi4py', 'h5py') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Values, config files, help text and messages (issue 14)


@pytest.mark.parametrize(
    "text,value,kind",
    [
        ("1e6", 1_000_000, int),
        ("2.5e3", 2500, int),
        ("-1E6", -1_000_000, int),
        ("1.5", 1.5, float),
        ("1e-3", 1e-3, float),
        ("2.55e1", 25.5, float),
        ("1e30", 1e30, float),  # far beyond any count: stays what it looks like
    ],
)
def test_exponent_literals_that_are_whole_numbers_are_ints(text, value, kind):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is kind


def test_a_tiny_range_still_parses_as_numbers():
    low, high = parse_value("0,1e-37")
    assert (low, high) == (0, 1e-37) and type(high) is float


def test_samples_in_exponent_form_are_accepted_by_montecarlo():
    config = parse(["run", "montecarlo", "-o", "pi.h5", "-p", "samples=1e6"]).config
    params = load_kernel("montecarlo").check_params(config.params)
    assert params["samples"] == 1_000_000 and isinstance(params["samples"], int)


def test_strings_in_a_toml_params_table_mean_what_they_mean_after_p(tmp_path):
    toml = tmp_path / "job.toml"
    toml.write_text('kernel = "stats"\ninput = "d.h5:/x"\noutput = "o.h5"\n[params]\n')
    toml.write_text(toml.read_text() + 'range = "0,40"\nbins = "8"\nlabel = "abc"\n')
    config = parse(["run", "--config", str(toml)]).config
    assert config.params == {"range": [0, 40], "bins": 8, "label": "abc"}
    from_cli = parse(["run", "stats", "d.h5:/x", "-o", "o.h5", "-p", "range=0,40", "-p", "bins=8"])
    stats = load_kernel("stats")
    assert stats.check_params({"range": config.params["range"]}) == stats.check_params(
        {"range": from_cli.config.params["range"]}
    )


def test_help_lists_every_exit_code_of_errors_py(capsys):
    codes = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert codes and set(codes.values()) == set(EXIT_MEANINGS)
    for argv in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            parse(argv)
        text = " ".join(capsys.readouterr().out.split())
        for value in codes.values():
            assert f"{value} {' '.join(EXIT_MEANINGS[value].split())}" in text
    assert "rerun with --resume" in exit_codes_text()


def test_checkpoint_every_zero_names_every_stop_signal(capsys):
    with pytest.raises(SystemExit):
        parse(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0: only when stopped by SIGTERM, SIGUSR1 or SIGINT" in text


@pytest.mark.parametrize("typo,meant", [("stat", "stats"), ("montecarl", "montecarlo")])
def test_a_misspelt_builtin_kernel_gets_a_suggestion(typo, meant):
    with pytest.raises(UsageError) as caught:
        load_kernel(typo)
    assert f"unknown kernel '{typo}' (did you mean '{meant}'?)" in str(caught.value)
    with pytest.raises(UsageError) as caught:
        load_kernel("zzz")
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize("count,text", [(0, "0 ranks"), (1, "1 rank"), (2, "2 ranks")])
def test_plural(count, text):
    assert plural(count, "rank") == text


def _engine_result(n_ranks, n_chunks, rows):
    import numpy as np

    from hpcapp.engine import TIMING_COLUMNS, EngineResult

    timing = np.zeros((n_ranks, len(TIMING_COLUMNS)))
    timing[:, TIMING_COLUMNS.index("rows")] = rows / n_ranks
    timing[:, TIMING_COLUMNS.index("startup")] = 0.5
    timing[:, TIMING_COLUMNS.index("compute")] = 0.25
    return EngineResult(n_chunks, {"s": np.asarray(1.0)}, timing)


def test_summary_of_one_rank_one_chunk_one_row_is_singular():
    from hpcapp.app import summary
    from hpcapp.config import JobConfig
    from hpcapp.source import Source

    source = Source(n_rows=1, row_shape=(), dtype="<f8", path="d.h5", dataset="/x")
    config = JobConfig(kernel="k.py:f", output="o.h5", input="d.h5:/x")
    text = summary(config, source, 1, _engine_result(1, 1, 1), 1.0, 1)
    assert "1 row in 1 chunk of 1 row, 1 rank," in text
    assert not re.search(r"\b1 (rank|chunk|row)s\b", text)


def test_show_says_1_rank(tmp_path):
    import h5py
    import numpy as np

    out = tmp_path / "o.h5"
    with h5py.File(out, "w") as h5:
        h5.attrs["hpcapp_version"] = "0"
        h5.create_dataset("result/s", data=1.0)
        h5.create_dataset("timing", data=np.zeros((1, 2))).attrs["columns"] = ["read", "startup"]
    from hpcapp.show import describe

    text = describe(str(out))
    assert "timing (1 rank; min / mean / max):" in text and "startup" in text


def test_summary_reports_start_up_apart_and_rates_without_it():
    from hpcapp.app import summary
    from hpcapp.config import JobConfig
    from hpcapp.source import Source

    source = Source(n_rows=1_000_000, row_shape=(), dtype="<f8", path="d.h5", dataset="/x")
    config = JobConfig(kernel="stats", output="o.h5", input="d.h5:/x")
    text = summary(config, source, 1000, _engine_result(2, 1000, 1_000_000), 1.0, 2)
    assert "start-up seconds per rank (imports, MPI, checks, kernel warm-up): min 0.500" in text
    assert "busy seconds per rank (read+compute): min 0.250" in text
    # 1e6 rows of 8 bytes in 0.25 s: start-up (0.5 s) would have made it 0.0107 GB/s.
    assert "throughput after start-up: 4 Mrows/s, 0.032 GB/s" in text


# ---------------------------------------------------------------------------------------------
# Launching: module files, threads


def test_a_module_file_run_directly_says_how_to_run_hpcapp(tmp_path):
    args = ["run", "stats", "d.h5:/x", "-o", str(tmp_path / "o.h5")]
    done = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, str(REPO / "hpcapp" / "cli.py"), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("hpcapp: error") == 1, done.stderr  # rank 0 only
    assert "cli.py is a module of hpcapp, not a program" in done.stderr


@pytest.mark.parametrize(
    "env,cores,threads",
    [
        ({"MPI_LOCALNRANKS": "2"}, 2, "1"),
        ({"OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, 16, "4"),
        ({"MPI_LOCALNRANKS": "8"}, 2, "1"),
        ({"SLURM_STEP_TASKS_PER_NODE": "4(x2),2", "SLURM_NODEID": "2"}, 8, "4"),
        ({"SLURM_STEP_TASKS_PER_NODE": "4(x2),2", "SLURM_NODEID": "1"}, 8, "2"),
        ({"MPI_LOCALNRANKS": "1"}, 2, None),  # alone on the node: BLAS may use every core
        ({}, 2, None),  # no launcher
        ({"MPI_LOCALNRANKS": "2", "OMP_NUM_THREADS": "2"}, 2, None),  # the user's choice
        ({"MPI_LOCALNRANKS": "2", "MKL_NUM_THREADS": "1"}, 2, None),
    ],
)
def test_threads_are_limited_only_when_ranks_share_a_node_and_the_user_said_nothing(
    env, cores, threads
):
    env = dict(env)
    before = dict(env)
    note = launch.limit_threads(env, cores)
    if threads is None:
        assert note is None and env == before
    else:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            assert env[name] == threads
        assert note.startswith(f"BLAS threads limited to {threads} per rank (")


def test_numpy_is_not_imported_before_the_threads_are_limited():
    code = (
        "import sys\n"
        "import hpcapp.__main__\n"
        "print(sorted(m for m in ('numpy', 'h5py', 'mpi4py', 'numba') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_two_ranks_without_thread_variables_get_no_warning_and_one_note(tmp_path):
    import numpy as np

    spec = write_dataset(tmp_path / "in.h5", np.arange(1000, dtype=np.float64))
    env = clean_env()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    done = subprocess.run(
        cli_command(["run", "stats", spec, "-o", str(tmp_path / "o.h5"), "-q"], 2),
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
    cores = os.cpu_count()
    threads = max(1, cores // 2)
    assert done.stdout.count("BLAS threads limited") == 1
    assert f"BLAS threads limited to {threads} per rank (2 ranks on {plural(cores, 'core')}" in (
        done.stdout
    )


# ---------------------------------------------------------------------------------------------
# Start-up is timed apart from compute

SLOW_PREPARE_KERNEL = """
import time
import numpy as np
from hpcapp import kernel

def warm(dtype, chunk_shape, params):
    if params["fail"]:
        raise RuntimeError("no compiler here")
    time.sleep(0.6)  # stands for importing numba and loading compiled code

@kernel(prepare=warm)
def total(chunk, fail=False):
    return {"s": np.asarray(chunk.sum())}
"""


def test_a_kernels_warm_up_is_start_up_not_compute(tmp_path):
    import h5py
    import numpy as np

    from hpcapp.engine import TIMING_COLUMNS

    spec = write_dataset(tmp_path / "in.h5", np.arange(1000, dtype=np.float64))
    (tmp_path / "k.py").write_text(SLOW_PREPARE_KERNEL)
    out = tmp_path / "o.h5"
    done = run_cli(["run", f"{tmp_path / 'k.py'}:total", spec, "-o", str(out), "-q"], 2)
    assert done.returncode == 0, done.stderr
    with h5py.File(out, "r") as h5:
        timing = h5["timing"][()]
        assert list(h5["timing"].attrs["columns"]) == list(TIMING_COLUMNS)
    assert (timing[:, TIMING_COLUMNS.index("startup")] >= 0.6).all()
    assert (timing[:, TIMING_COLUMNS.index("compute")] < 0.3).all()
    assert "start-up seconds per rank" in done.stdout
    failed = run_cli(
        ["run", f"{tmp_path / 'k.py'}:total", spec, "-o", str(out), "--overwrite", "-pfail=true"], 2
    )
    assert failed.returncode == 1
    assert "warm-up (prepare) raised RuntimeError('no compiler here')" in failed.stderr
    assert failed.stderr.count("hpcapp: error") == 1


@pytest.mark.parametrize(
    "shape,dtype,loads_numba",
    [((1 << 20,), "float64", True), ((100, 3), "float64", False), ((1 << 20,), "float16", False)],
)
def test_stats_warm_up_loads_the_compiled_loops_only_where_chunks_use_them(
    shape, dtype, loads_numba
):
    code = (
        "import sys, numpy as np\n"
        "from hpcapp.kernels.registry import load_kernel\n"
        "kernel = load_kernel('stats')\n"
        f"kernel.prepare(np.dtype('{dtype}'), {shape!r}, kernel.check_params({{}}))\n"
        "print('hpcapp.kernels._fused' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == str(loads_numba)
