"""The job identity covers the code: --resume refuses a checkpoint or output of other code."""

import re
import sys

import numpy as np
import pytest
from helpers import (
    clean_env,
    cli_here,
    mpiexec,
    read_results,
    result_variables,
    run_cli,
    write_dataset,
)

from hpcapp.jobs.provenance import describe_change, disagreement, load_with_code

BUGGY_KERNEL = """
import numpy as np

SCALE = 1.0

def scaled(chunk):
    if int(chunk[0, 0]) == 24 * 10:
        return {"s": chunk.summ(axis=0) * SCALE}  # the typo: chunk 24 raises
    return {"s": chunk.sum(axis=0) * SCALE}
"""


@pytest.fixture
def data_spec(tmp_path):
    """31 chunks of 10 rows of integer-valued floats (exact sums); column 0 is the row number."""
    rng = np.random.default_rng(5)
    data = np.column_stack([np.arange(310.0), rng.integers(-1000, 1000, 310).astype(float)])
    return data, write_dataset(tmp_path / "in.h5", data)


def run_args(kernel, spec, out, *extra):
    return ["run", kernel, spec, "-o", str(out), "--chunk-rows", "10", *extra]


def test_resume_after_editing_the_kernel_is_refused(tmp_path, data_spec):
    data, spec = data_spec
    kernel_file = tmp_path / "scaled.py"
    kernel_file.write_text(BUGGY_KERNEL)
    out = tmp_path / "out.h5"
    args = run_args(f"{kernel_file}:scaled", spec, out, "--checkpoint-every", "1e-6")
    failed = run_cli(args, 2)
    assert failed.returncode == 1 and "chunk 24" in failed.stderr, failed.stderr
    kernel_file.write_text(BUGGY_KERNEL.replace("summ", "sum").replace("1.0", "2.0"))
    # In this process (one rank): the identity it computes is compared with the checkpoint's,
    # made by another process.
    resumed = cli_here([*args, "--resume"])
    assert resumed.returncode == 2, resumed.stderr
    assert f"{kernel_file} was edited" in resumed.stderr
    assert "was computed by other code than this run's" in resumed.stderr
    assert "--overwrite instead of --resume" in resumed.stderr
    assert not out.exists()
    again = cli_here([*args, "--overwrite"])
    assert again.returncode == 0, again.stderr
    assert read_results(out)["s"].tolist() == (data.sum(axis=0) * 2.0).tolist()


FINALIZE_KERNEL = """
import numpy as np
import hpcapp

def finish(partial, params):
    return {"mean": partial["s"] / partial["n"]}

@hpcapp.kernel(finalize=finish)
def mean(chunk):
    return {"s": chunk.sum(axis=0), "n": np.int64(len(chunk))}
"""


def test_resume_after_editing_finalize_of_a_finished_job_is_refused(tmp_path, data_spec):
    _, spec = data_spec
    kernel_file = tmp_path / "mean.py"
    kernel_file.write_text(FINALIZE_KERNEL)
    out = tmp_path / "out.h5"
    args = run_args(f"{kernel_file}:mean", spec, out)
    assert run_cli(args, 2).returncode == 0
    # In this process (one rank): the identity it computes is the other process's.
    unchanged = cli_here([*args, "--resume"])
    assert unchanged.returncode == 0 and "nothing to resume" in unchanged.stdout
    before = out.read_bytes()
    kernel_file.write_text(FINALIZE_KERNEL.replace('{"mean": ', '{"average": '))
    edited = cli_here([*args, "--resume"])
    assert edited.returncode == 2 and "nothing to resume" not in edited.stdout, edited.stdout
    assert f"output {str(out)!r} was computed by other code" in edited.stderr
    assert f"{kernel_file} was edited" in edited.stderr and "--overwrite" in edited.stderr
    assert out.read_bytes() == before
    redone = cli_here([*args, "--overwrite"])
    assert redone.returncode == 0 and result_variables(out) == {"average"}


HELPER_KERNEL = """
import os
from helper import sq

def squares(chunk):
    if os.environ.get("FAIL_AT_ROW") == str(int(chunk[0, 0])):
        raise OSError("the disk went away, as the test asked")
    return {"s": sq(chunk).sum(axis=0)}
"""
HELPER = "def sq(x):\n    return x * x\n"


def write_kernel_with_helper(folder):
    folder.mkdir()
    (folder / "squares.py").write_text(HELPER_KERNEL)
    (folder / "helper.py").write_text(HELPER)
    return folder / "squares.py", folder / "helper.py"


def test_kernel_file_imports_the_module_beside_it(tmp_path, data_spec):
    data, spec = data_spec
    kernel_file, _ = write_kernel_with_helper(tmp_path / "kernels")
    out = tmp_path / "out.h5"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    done = run_cli(run_args(f"{kernel_file}:squares", spec, out), 2, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert read_results(out)["s"].tolist() == (data * data).sum(axis=0).tolist()


def test_resume_after_editing_a_helper_is_refused(tmp_path, data_spec):
    data, spec = data_spec
    kernel_file, helper = write_kernel_with_helper(tmp_path / "kernels")
    out = tmp_path / "out.h5"
    args = run_args(f"{kernel_file}:squares", spec, out, "--checkpoint-every", "1e-6")
    failed = run_cli(args, 2, env={"FAIL_AT_ROW": "200"})
    assert failed.returncode == 1 and "the disk went away" in failed.stderr
    helper.write_text(HELPER.replace("x * x", "x * x * 1.0"))
    resumed = run_cli([*args, "--resume"], 3)
    assert resumed.returncode == 2
    assert f"({helper} was edited)" in resumed.stderr, resumed.stderr
    helper.write_text(HELPER)  # the same code again (and the disk is back): --resume continues
    finished = run_cli([*args, "--resume"], 3)
    assert finished.returncode == 0 and "resuming from" in finished.stdout, finished.stderr
    assert read_results(out)["s"].tolist() == (data * data).sum(axis=0).tolist()


def test_ranks_importing_different_kernel_files_are_refused(tmp_path, data_spec):
    _, spec = data_spec
    for name, body in (("a", "chunk.sum(axis=0)"), ("b", "chunk.sum(axis=0) + 1")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "kern.py").write_text(f"def f(chunk):\n    return {{'s': {body}}}\n")
    hpcapp = [sys.executable, "-m", "hpcapp", *run_args("kern.py:f", spec, tmp_path / "o.h5")]
    # A launch mistake: rank 0 runs in a/, ranks 1 and 2 in b/ (MPMD syntax of mpiexec).
    command = [mpiexec(), "-n", "1", "-wdir", str(tmp_path / "a"), *hpcapp, ":"]
    command += ["-n", "2", "-wdir", str(tmp_path / "b"), *hpcapp]
    import subprocess

    done = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("hpcapp: error:") == 1
    assert "the ranks imported different kernel code (ranks 1, 2 differ from rank 0:" in done.stderr
    assert f"{tmp_path / 'a' / 'kern.py'} only on rank 0" in done.stderr
    assert f"{tmp_path / 'b' / 'kern.py'} not on rank 0" in done.stderr
    assert not (tmp_path / "o.h5").exists()


def test_code_identity_hashes_the_kernel_and_its_own_helpers_only(tmp_path):
    (tmp_path / "plain.py").write_text(
        "import json\nimport tomllib\nfrom near import g\n\n"
        "def f(chunk):\n    return {'s': g(chunk)}\n"
    )
    (tmp_path / "near.py").write_text("def g(x):\n    return x\n")
    (tmp_path / "jit.py").write_text("def f(chunk):  # to be compiled with numba\n    return {}\n")
    _, code = load_with_code(f"{tmp_path / 'plain.py'}:f")
    names = set(code["files"])
    assert {str(tmp_path / "plain.py"), str(tmp_path / "near.py")} <= names
    assert "hpcapp/parallel/engine.py" in names and "hpcapp/parallel/reduce.py" in names
    assert not any("json" in name or "tomllib" in name for name in names)
    assert "hpcapp/cli/parser.py" not in names and "hpcapp/kernels/registry.py" not in names
    assert code["versions"]["numpy"] == np.__version__ and "numba" not in code["versions"]
    _, compiled = load_with_code(f"{tmp_path / 'jit.py'}:f")
    assert compiled["versions"]["numba"]
    newer = {"versions": {**code["versions"], "numpy": "99"}, "files": dict(code["files"])}
    newer["files"][str(tmp_path / "near.py")] = "0" * 32
    newer["files"]["/x/helper.py"] = "1" * 32
    assert describe_change(code, newer) == (
        f"numpy {np.__version__} -> 99; {tmp_path / 'near.py'} was edited; /x/helper.py is new"
    )
    assert describe_change(code, code) == "nothing"
    assert disagreement([code, code]) is None
    assert re.search(r"rank 1 differs from rank 0: numpy \S+ -> 99;", disagreement([code, newer]))


@pytest.mark.parametrize("name", ["numpy", "numba", "h5py", "mpi4py", "cftime"])
@pytest.mark.parametrize("imported", [True, False])
def test_versions_are_the_installers(monkeypatch, name, imported):
    """Versions in the code identity equal importlib.metadata's, imported or not."""
    import importlib
    import importlib.metadata

    from hpcapp.jobs import provenance

    if imported:
        importlib.import_module(name)
    else:  # found from its dist-info instead
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert provenance._version(name) == importlib.metadata.version(name)
    assert provenance._version("no_such_package_here") is None
