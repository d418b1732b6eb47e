"""Each ``run`` option is declared once (JobConfig); the front ends derive from it. Pure, no MPI."""

import argparse
import dataclasses
import inspect

import pytest

from hpcapp.cli.parser import parse
from hpcapp.errors import UsageError
from hpcapp.jobs.config import CONFLICTS, JobConfig, make_job_config
from hpcapp.jobs.library import DELIVERY, run
from hpcapp.jobs.options import (
    SAME,
    add_arguments,
    check_file_values,
    command_line_values,
    declared,
    merge,
    option,
)

OPTIONS = declared(JobConfig)
FLAGGED = [item for item in OPTIONS if item.option.flags and item.kind is not dict]


def _toml(value):
    return f'"{value}"' if isinstance(value, str) else str(value).lower()


def _two_values(item):
    """Return (file's value, command line's value) for an option, both valid and different."""
    if item.kind is bool:
        return False, True  # a flag can only say True
    if item.option.choices:
        return item.option.choices[-1], item.option.choices[0]
    if item.name == "resample":  # checked when parsed: DIM=FREQ
        return "time=1D", "time=3M"
    return {int: (3, 5), float: (1.5, 2.5), str: ("a", "b")}[item.kind]


@pytest.mark.parametrize("item", FLAGGED, ids=lambda item: item.name)
def test_every_option_reads_from_a_file_and_the_command_line_wins(tmp_path, item):
    base = ["run", "stats", "d.h5:/x"]
    if item.name != "output":  # required on the command line: given by the file below
        base += ["-o", "o.h5"]
        assert getattr(parse(base).config, item.name) == item.default
    flag = item.option.flags[-1]
    in_file, on_line = _two_values(item)
    toml = tmp_path / "job.toml"
    toml.write_text(f"{item.name} = {_toml(on_line)}\n")
    # Not given on the command line, the option is None there: the file's value stands.
    assert getattr(parse([*base, "--config", str(toml)]).config, item.name) == on_line
    toml.write_text(f"{item.name} = {_toml(in_file)}\n")
    line = [flag] if item.kind is bool else [flag, str(on_line)]
    assert getattr(parse([*base, *line, "--config", str(toml)]).config, item.name) == on_line


def test_positionals_read_from_a_file_and_the_command_line_wins(tmp_path):
    toml = tmp_path / "job.toml"
    toml.write_text('kernel = "montecarlo"\ninput = "f.h5:/y"\noutput = "o.h5"\n')
    config = parse(["run", "--config", str(toml)]).config
    assert (config.kernel, config.input) == ("montecarlo", "f.h5:/y")
    config = parse(["run", "stats", "d.h5:/x", "--config", str(toml)]).config
    assert (config.kernel, config.input) == ("stats", "d.h5:/x")


def test_run_help_shows_every_option_with_its_help(capsys):
    with pytest.raises(SystemExit):
        parse(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for item in OPTIONS:
        assert " ".join(item.option.help.replace("%%", "%").split()) in text, item.name
        for flag in item.option.flags:
            assert flag in text


# Every refusal of a value, word for word, whichever way the value came.
REFUSALS = [
    ("chunk_rows", 0, "--chunk-rows must be a positive number of rows, got 0"),
    (
        "checkpoint_every",
        -2,
        "--checkpoint-every must be >= 0 seconds (0: only on a signal), got -2.0",
    ),
    ("distribute", "x", "--distribute must be one of read, scatter"),
    ("schedule", "x", "--schedule must be one of static, dynamic"),
    ("compression", "zip", "--compression must be gzip or lzf, got 'zip'"),
    ("group_every", 0, "--group-every must be a positive number of records, got 0"),
    ("group_by", " ", "--group-by needs a dataset name, e.g. --group-by time.month"),
    (
        "resample",
        "time=2W",
        "--resample time=2W: unknown frequency '2W': use ND (days), NM or NMS (months), NY, "
        "NYS or NA (years), e.g. 1D, 5D, 1M, 3MS, 1Y",
    ),
    ("resample", "1M", "--resample takes DIM=FREQ (e.g. time=1M), got '1M'"),
]


@pytest.mark.parametrize("name,value,message", REFUSALS)
def test_a_bad_value_is_refused_alike_from_a_file_and_from_python(tmp_path, name, value, message):
    toml = tmp_path / "job.toml"
    toml.write_text(f"{name} = {_toml(value)}\n")
    with pytest.raises(UsageError) as caught:
        parse(["run", "stats", "d.h5:/x", "-o", "o.h5", "--config", str(toml)])
    assert str(caught.value) == message
    with pytest.raises(UsageError) as caught:
        make_job_config({"kernel": "stats", name: value}, {}, output_required=False)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "values,message",
    [
        (
            {"schedule": "dynamic", "distribute": "scatter"},
            "--schedule dynamic needs every rank to read its own chunks: drop --distribute scatter",
        ),
        (
            {"group_every": 2, "group_by": "t.month"},
            "--group-every and --group-by exclude each other: give one",
        ),
        (
            {"resample": "time=1M", "group_by": "time.month"},
            "--resample and --group-by exclude each other: give one",
        ),
        (
            {"resample": "time=1M", "group_every": 3},
            "--resample and --group-every exclude each other: give one",
        ),
        (
            {"raw": True, "mask_valid_range": True},
            "--raw and --mask-valid-range exclude each other: --raw decodes nothing",
        ),
    ],
)
def test_conflicts_are_refused_however_the_config_is_made(tmp_path, values, message):
    toml = tmp_path / "job.toml"
    toml.write_text("".join(f"{key} = {_toml(value)}\n" for key, value in values.items()))
    with pytest.raises(UsageError) as caught:
        parse(["run", "stats", "d.h5:/x", "-o", "o.h5", "--config", str(toml)])
    assert str(caught.value) == message
    with pytest.raises(UsageError) as caught:
        JobConfig(kernel="stats", **values)
    assert str(caught.value) == message
    fine = JobConfig(kernel="stats")
    with pytest.raises(UsageError) as caught:
        dataclasses.replace(fine, **values)
    assert str(caught.value) == message


def test_conflicts_name_declared_options():
    names = {item.name for item in OPTIONS}
    for rule in CONFLICTS:
        assert {rule.first, rule.second} <= names


def test_hpcapp_run_takes_exactly_the_declared_options_with_their_defaults():
    parameters = inspect.signature(run).parameters
    assert set(parameters) - set(DELIVERY) == {item.name for item in OPTIONS}
    for item in OPTIONS:
        default = parameters[item.name].default
        if item.default is dataclasses.MISSING:
            assert default is inspect.Parameter.empty, item.name
        elif item.option.library_default is not SAME:
            assert default == item.option.library_default, item.name
        elif item.kind is dict:
            assert default is None, item.name  # not a shared mutable default
        else:
            assert default == item.default and type(default) is type(item.default), item.name


def test_unknown_values_are_refused_by_the_merge():
    with pytest.raises(TypeError, match="not options of JobConfig: no_such_option"):
        make_job_config({"kernel": "stats", "no_such_option": "w"}, {})


@dataclasses.dataclass(frozen=True)
class _Toy:
    """A config with one new option, declared as JobConfig's are."""

    kernel: str = option("the kernel", default=dataclasses.MISSING)
    weights: str | None = option("weights dataset", "--weights", metavar="NAME")
    scale: float = option("a factor", "--scale", default=1.0)
    dry: bool = option("do nothing", "--dry", default=False)


def test_one_declaration_gives_the_argument_the_toml_key_and_the_merge():
    parser = argparse.ArgumentParser()
    add_arguments(parser, _Toy, ())
    assert "--weights NAME" in parser.format_help()
    given = command_line_values(parser.parse_args(["k", "--scale", "2"]), _Toy)
    assert given == {"kernel": "k", "weights": None, "scale": 2.0, "dry": None}
    file_values = check_file_values("t.toml", {"weights": "/w", "scale": 3, "dry": True}, _Toy)
    assert _Toy(**merge(_Toy, given, file_values)) == _Toy("k", "/w", 2.0, True)
    with pytest.raises(UsageError, match="key 'weights' must be a str, got 1"):
        check_file_values("t.toml", {"weights": 1}, _Toy)


def test_an_option_of_a_type_toml_cannot_hold_is_refused_when_declared():
    @dataclasses.dataclass
    class Bad:
        shape: tuple[int, ...] = option("a shape", "--shape", default=())

    with pytest.raises(TypeError, match="an option's type must be one of"):
        declared(Bad)
