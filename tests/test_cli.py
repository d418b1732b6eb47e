"""Command-line parsing and config files: pure, no MPI."""

import re

import pytest
from helpers import run_python

from hpcapp import errors
from hpcapp.cli.parser import EXIT_MEANINGS, exit_codes_text, parse
from hpcapp.errors import UsageError
from hpcapp.jobs.options import parse_value
from hpcapp.kernels.registry import load_kernel
from hpcapp.text import plural


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
    out = run_python(code)
    assert out.strip() == "[]"


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

    from hpcapp.parallel.engine import TIMING_COLUMNS, EngineResult

    timing = np.zeros((n_ranks, len(TIMING_COLUMNS)))
    timing[:, TIMING_COLUMNS.index("rows")] = rows / n_ranks
    timing[:, TIMING_COLUMNS.index("startup")] = 0.5
    timing[:, TIMING_COLUMNS.index("compute")] = 0.25
    return EngineResult(n_chunks, {"s": np.asarray(1.0)}, timing)


def test_summary_of_one_rank_one_chunk_one_row_is_singular():
    from hpcapp.io.sources.hdf5 import Hdf5Source
    from hpcapp.jobs.config import JobConfig
    from hpcapp.jobs.report import summary

    source = Hdf5Source(n_rows=1, row_shape=(), dtype="<f8", path="d.h5", dataset="/x")
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
    from hpcapp.cli.show import describe

    text = describe(str(out))
    assert "timing (1 rank; min / mean / max):" in text and "startup" in text


def test_summary_reports_start_up_apart_and_rates_without_it():
    from hpcapp.io.sources.hdf5 import Hdf5Source
    from hpcapp.jobs.config import JobConfig
    from hpcapp.jobs.report import summary

    source = Hdf5Source(n_rows=1_000_000, row_shape=(), dtype="<f8", path="d.h5", dataset="/x")
    config = JobConfig(kernel="stats", output="o.h5", input="d.h5:/x")
    text = summary(config, source, 1000, _engine_result(2, 1000, 1_000_000), 1.0, 2)
    assert re.search(r"start-up: imports, MPI start, checks, kernel warm-up +0\.500 +0\.500", text)
    assert re.search(r"read\+compute: .* +0\.250 +0\.250 +0\.250 +0\.250", text)
    # 1e6 rows of 8 bytes in 0.25 s: start-up (0.5 s) would have made it 0.0107 GB/s.
    assert "throughput after start-up: 4 Mrows/s, 0.032 GB/s" in text
