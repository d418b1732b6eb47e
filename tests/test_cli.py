"""Command-line parsing and config files: pure, no MPI."""

import subprocess
import sys

import pytest
from conftest import clean_env

from hpcapp.cli import parse
from hpcapp.config import parse_value
from hpcapp.errors import UsageError


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
