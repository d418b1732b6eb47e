"""A full disk: refused before any work, or one line and the result kept for --resume.

The disks are real: small tmpfs file systems mounted for each test (root; CI runs as root, and a
mount that fails fails the test). A kernel fills a disk on its first call, as another job
would, and counts its calls in files, so a test can see that --resume computed no chunk.
"""

import errno
import os
import re
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from helpers import (
    clean_env,
    cli_command,
    cli_here,
    read_results,
    run_cli,
    without_quiet,
    write_dataset,
)
from ncdata import write_netcdf

import hpcapp
from hpcapp.io import checkpoint, space, writer

KERNELS = """
import os
import time

import numpy as np

import hpcapp


def _fill():
    # HPCAPP_TEST_FILL=DIR:LEAVE,...: fill each DIR until LEAVE bytes are free, once a process.
    for entry in filter(None, os.environ.get("HPCAPP_TEST_FILL", "").split(",")):
        folder, _, leave = entry.rpartition(":")
        path = os.path.join(folder, f"filler-{os.getpid()}")
        if os.path.exists(path):
            continue
        try:  # unbuffered: nothing left to flush (and fail) at close once the disk is full
            file = open(path, "wb", buffering=0)
        except OSError:  # another rank filled it first: full already, as wanted
            continue
        with file:
            while True:
                stat = os.statvfs(folder)
                room = stat.f_bavail * stat.f_frsize - int(leave)
                if room <= 0:
                    break
                try:
                    # Half the room at most: two ranks filling at once cannot overshoot it.
                    file.write(bytes(max(1, min(room // 2, 1 << 16))))
                    file.flush()
                except OSError:
                    break


def _count(calls):
    with open(os.path.join(calls, f"calls-{os.getpid()}"), "a") as file:
        file.write("1\\n")


def reduced(chunk, calls="", cells=0, delay=0.0):
    _count(calls)
    _fill()
    time.sleep(delay)
    values = np.asarray(chunk, np.float64)
    return {"s": values.sum(axis=0), "big": np.full(int(cells), values.sum())}


@hpcapp.kernel(per_row="norm")
def rows(chunk, calls="", cells=0):
    _count(calls)
    _fill()
    values = np.asarray(chunk, np.float64)
    return {
        "norm": np.sqrt((values * values).sum(axis=1)),
        "s": values.sum(axis=0),
        "big": np.full(int(cells), values.sum()),
    }

"""

N_ROWS, CHUNK_ROWS = 40_000, 2_000
N_CHUNKS = N_ROWS // CHUNK_ROWS
CELLS = 100_000  # the kernels' "big" result: 0.8 MB, unknown before the first chunk
ERROR = re.compile(r"needs ~([\d.,]+) MB, ([\d.,]+) MB free")


@pytest.fixture
def tmpfs(tmp_path):
    """Mount tmpfs file systems of a given size under tmp_path; unmount them afterwards."""
    mounted = []

    def mount(name, size):
        folder = tmp_path / name
        folder.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs (these tests need root): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    try:
        yield mount
    finally:
        for folder in reversed(mounted):
            if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def job(tmp_path):
    """The counting kernels over one input: ``job(kernel, out, *extra)`` gives the arguments."""
    spec = write_dataset(tmp_path / "in.h5", np.random.default_rng(5).normal(size=(N_ROWS, 3)))
    kernels = tmp_path / "kernels.py"
    kernels.write_text(KERNELS)
    calls = tmp_path / "calls"
    calls.mkdir()

    def args(kernel, out, *extra):
        return [
            "run", f"{kernels}:{kernel}", spec, "-o", str(out), "--chunk-rows", str(CHUNK_ROWS),
            "-p", f"calls={calls}", "-p", f"cells={CELLS}", "-q", *extra,
        ]  # fmt: skip

    def reference(kernel, out):
        """Write the job's result where there is room, in this process."""
        done = cli_here(args(kernel, out))
        assert done.returncode == 0, done.stderr

    args.calls = lambda: sum(len(p.read_text().split()) for p in calls.iterdir())
    args.reference = reference
    return args


def fill(*folders):
    """The environment that makes the kernels fill ``folders`` (DIR or DIR:LEAVE_BYTES).

    By default a page is left free: HDF5 then starts writing before it meets the full disk,
    which without hpcapp's reservation ends in a segmentation fault (h5py 3.16, HDF5 2.0).
    """
    entries = (f if ":" in f else f"{f}:4096" for f in map(str, folders))
    return {"HPCAPP_TEST_FILL": ",".join(entries)}


def empty(folder):
    """Remove the kernels' filler files: free the space again."""
    for path in folder.glob("filler-*"):
        path.unlink()


def left_in(folder):
    """Return what is in ``folder`` besides the fillers."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("filler-"))


def one_error_line(done, code):
    """Check exit code ``code``, one stderr line and no traceback; return the line."""
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hpcapp: error: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


def bits(path):
    return {key: value.tobytes() for key, value in read_results(path).items()}


def run_job(args, n_ranks, env=None):
    """Run the command line: under mpiexec on several ranks, in this process on one."""
    return run_cli(args, n_ranks, env=env) if n_ranks > 1 else cli_here(args, env=env)


@pytest.mark.parametrize(("n_ranks", "then"), [(1, "elsewhere"), (2, "free")])
def test_output_on_a_full_disk_keeps_the_result_and_resume_writes_it(
    tmp_path, tmpfs, job, n_ranks, then
):
    reference = tmp_path / "reference.h5"
    job.reference("reduced", reference)
    computed = job.calls()
    disk = tmpfs("disk", "4m")
    out, kept = disk / "out.h5", tmp_path / "kept"
    args = job("reduced", out, "--checkpoint", str(kept))
    done = run_job(args, n_ranks, env=fill(disk))
    line = one_error_line(done, 1)
    assert line.startswith(f"hpcapp: error: no space left on device writing {out} (needs ~")
    assert line.endswith(
        f"the result is kept in {kept}: free space and rerun with --resume "
        "(no chunk is computed again)"
    )
    needs, free = (float(n.replace(",", "")) for n in ERROR.search(line).groups())
    # The message rounds to 0.1 MB; the writer reserves the file's exact size.
    assert free < needs and (needs + 0.05) * 1e6 >= reference.stat().st_size
    assert left_in(disk) == []  # neither the output nor its temporary file
    assert job.calls() == 2 * computed

    # Still full: refused before any work, with the numbers, and the checkpoint as it was.
    before = sorted((p.name, p.stat().st_mtime_ns) for p in kept.iterdir())
    line = one_error_line(run_job([*args, "--resume"], n_ranks), 2)
    assert line.startswith(f"hpcapp: error: not enough space on {disk} for {out}: needs ~")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in kept.iterdir()) == before

    if then == "free":
        empty(disk)
    else:
        out = tmp_path / "elsewhere.h5"
        args = job("reduced", out, "--checkpoint", str(kept))
    resumed = run_job(without_quiet([*args, "--resume"]), n_ranks)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {kept}: {N_CHUNKS} of {N_CHUNKS} chunks were done" in resumed.stdout
    assert job.calls() == 2 * computed  # not one chunk computed again
    assert bits(out) == bits(reference)
    assert not kept.exists()


def test_per_row_outputs_stay_in_the_checkpoint_when_the_output_does_not_fit(tmp_path, tmpfs, job):
    reference = tmp_path / "reference.h5"
    job.reference("rows", reference)
    computed = job.calls()
    disk = tmpfs("disk", "8m")
    out = disk / "out.h5"
    kept = disk / "out.h5.checkpoint"  # the default: rows.h5 is on the output's disk
    # Room for the rows and the kept partial, not for the output's 0.8 MB of results.
    partial = {"s": np.zeros(3), "big": np.zeros(CELLS)}
    # A margin for rows.h5's own HDF5 overhead and the manifest, well below the output's rows.
    leave = N_ROWS * 8 + checkpoint.part_bytes({(0, 0): partial}) + (160 << 10)
    done = run_cli(job("rows", out), 2, env=fill(f"{disk}:{leave}"))
    line = one_error_line(done, 1)
    assert f"no space left on device writing {out} (needs ~" in line
    assert f"the result is kept in {kept}: free space and rerun with --resume" in line
    assert left_in(disk) == ["out.h5.checkpoint"]
    assert {"rows.h5", "manifest.json"} <= set(left_in(kept))
    with h5py.File(kept / "rows.h5") as h5:
        np.testing.assert_array_equal(h5["result/norm"][()], read_results(reference)["norm"])

    # Resumed with the output on another file system: rows.h5 is copied there.
    elsewhere = tmp_path / "elsewhere.h5"
    resumed = cli_here(
        without_quiet([*job("rows", elsewhere), "--checkpoint", str(kept), "--resume"])
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{N_CHUNKS} of {N_CHUNKS} chunks were done" in resumed.stdout
    assert job.calls() == 2 * computed
    assert bits(elsewhere) == bits(reference)
    assert not kept.exists()


def test_per_row_outputs_that_cannot_fit_stop_the_job_at_its_first_chunk(tmp_path, tmpfs, job):
    kept_disk = tmpfs("kept", "2m")
    kept = kept_disk / "ck"
    args = job("rows", tmp_path / "out.h5", "--checkpoint", str(kept))
    done = run_cli(args, 2, env=fill(f"{kept_disk}:{100 << 10}"))  # 0.1 MB for 0.3 MB of rows
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(
        f"hpcapp: error: not enough space on {kept} for the per-row outputs (rows.h5): "
        "needs ~0.3 MB, 0.1 MB free\n"
    )
    assert "Traceback" not in done.stderr
    assert job.calls() <= 4  # the first chunk of each rank, and what they were running
    assert not (tmp_path / "out.h5").exists()


def test_a_full_checkpoint_disk_too_is_said_in_the_same_line(tmp_path, tmpfs, job):
    disk, kept_disk = tmpfs("disk", "2m"), tmpfs("kept", "2m")
    out, kept = disk / "out.h5", kept_disk / "ck"
    done = cli_here(job("reduced", out, "--checkpoint", str(kept)), env=fill(disk, kept_disk))
    line = one_error_line(done, 1)
    assert f"no space left on device writing {out} (needs ~" in line
    assert (
        f"and the result could not be kept in {kept} either (no space left on device, needs ~"
        in line
    )
    assert "run again with --resume" in line
    assert left_in(disk) == [] and left_in(kept) == ["manifest.json"]


def test_an_interrupted_job_says_when_its_progress_could_not_be_saved(tmp_path, tmpfs, job):
    kept = tmpfs("kept", "2m") / "ck"
    args = job("reduced", tmp_path / "out.h5", "--checkpoint", str(kept), "-p", "delay=0.2")
    process = subprocess.Popen(
        cli_command(args, 2),
        env={**clean_env(), **fill(kept.parent)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(kept.parent.glob("filler-*")) and time.monotonic() < deadline:
        time.sleep(0.01)  # the first chunk has filled the disk
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr
    assert stderr == (
        f"hpcapp: interrupted (SIGTERM); progress could not be saved in {kept} (no space left "
        "on device on rank 0); what it kept before is intact: run the same command with "
        "--resume to continue from there\n"
    )
    assert left_in(kept) == ["manifest.json"]


def test_a_full_checkpoint_disk_does_not_stop_a_job_whose_output_fits(tmp_path, tmpfs, job):
    reference = tmp_path / "reference.h5"
    job.reference("reduced", reference)
    kept = tmpfs("kept", "2m") / "ck"
    out = tmp_path / "out.h5"
    args = job("reduced", out, "--checkpoint", str(kept), "--checkpoint-every", "1e-9")
    done = run_cli(args, 2, env=fill(kept.parent))
    assert done.returncode == 0, done.stderr
    assert (
        f"hpcapp: warning: could not save progress in {kept} (no space left on device); "
        "the job goes on"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert bits(out) == bits(reference)
    assert not kept.exists()


def test_an_output_larger_than_the_free_space_is_refused_before_any_work(tmp_path, tmpfs):
    # (lat, lon) maps of every statistic and a 64-bin histogram: 2.8 MB of results.
    data = np.random.default_rng(2).normal(size=(6, 60, 80))
    spec = write_netcdf(tmp_path / "in.nc", data)
    args = ["run", "stats", spec, "--over", "time", "-p", "range=-4,4", "-q"]
    disk = tmpfs("disk", "1m")
    out = disk / "out.h5"
    line = one_error_line(cli_here([*args, "-o", str(out)]), 2)
    assert line.startswith(
        f"hpcapp: error: not enough space on {disk} for {out} and its checkpoint: needs ~"
    )
    needs, free = (float(n.replace(",", "")) for n in ERROR.search(line).groups())
    assert free <= 1.05 < needs
    assert left_in(disk) == []  # no checkpoint either
    # The estimate is not below what the job writes.
    written = tmp_path / "out.h5"
    assert cli_here([*args, "-o", str(written)]).returncode == 0
    assert needs * 1e6 >= written.stat().st_size


def test_per_row_outputs_larger_than_the_checkpoint_disk_are_refused(tmp_path, tmpfs):
    # Per-record statistics (--over lat,lon) of 20,000 records: ~1.3 MB in the checkpoint.
    data = np.random.default_rng(2).normal(size=(20_000, 2, 2)).astype(np.float32)
    spec = write_netcdf(tmp_path / "in.nc", data)
    kept = tmpfs("kept", "512k") / "ck"
    out = tmp_path / "out.h5"
    args = ["run", "stats", spec, "--over", "lat,lon", "-o", str(out), "-q"]
    line = one_error_line(cli_here([*args, "--checkpoint", str(kept)]), 2)
    assert line.startswith(
        f"hpcapp: error: not enough space on {kept.parent} for the checkpoint {kept} of {out}: "
        "needs ~"
    )
    assert not kept.exists() and not out.exists()
    # The estimate is not below the per-row outputs the job writes.
    assert cli_here([*args, "--checkpoint", str(tmp_path / "ck")]).returncode == 0
    rows = sum(value.nbytes for value in read_results(out).values() if value.size >= 20_000)
    assert float(ERROR.search(line).group(1)) * 1e6 >= rows - 20_000 * 8  # less the time axis


def write_time_input(path):
    """A (time, lat, lon) input with CF times over two years, for --group-by time.month."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("time", 730), ("lat", 3), ("lon", 4)):
            ds.createDimension(name, n)
        time = ds.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "days since 2000-01-01", "standard"
        time[:] = np.arange(730.0)
        ds.createVariable("tas", "f4", ("time", "lat", "lon"))[:] = np.arange(730 * 12.0).reshape(
            730, 3, 4
        )
    return f"{path}:/tas"


@pytest.mark.parametrize(
    "options",
    [
        {"params": {"bins": 16, "range": [-3, 3]}},
        {"over": "time", "params": {"bins": 8, "range": [-3, 3]}},
        {"over": "lat,lon"},
        {"group_by": "time.month", "time": True},
    ],
    ids=["columns", "maps", "per-row", "months"],
)
@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "dry-run"])
def test_the_room_reserved_covers_what_the_writer_adds(tmp_path, monkeypatch, options, in_memory):
    if not in_memory:  # results too large to build the file in memory: measured by a dry run
        monkeypatch.setattr(writer, "IN_MEMORY_BYTES", -1)
    options = dict(options)
    if options.pop("time", False):
        spec = write_time_input(tmp_path / "in.nc")
    elif "over" in options:
        spec = write_netcdf(tmp_path / "in.nc", np.random.default_rng(1).normal(size=(40, 6, 7)))
    else:
        spec = write_dataset(tmp_path / "in.h5", np.random.default_rng(1).normal(size=(500, 3)))
    reserved = {}
    real = space.reserve

    def reserve(path, n_bytes):
        reserved[os.path.basename(path)] = (os.path.getsize(path), n_bytes)
        real(path, n_bytes)

    monkeypatch.setattr(space, "reserve", reserve)
    out = tmp_path / "out.h5"
    hpcapp.run("stats", spec, output=str(out), chunk_rows=7, quiet=True, **options)
    before, n_bytes = next(v for k, v in reserved.items() if k.startswith(".out.h5.tmp-"))
    assert out.stat().st_size - before <= n_bytes
    # Built in memory (no per-row outputs to complete), the file is reserved exactly, from empty.
    per_row = options.get("over") == "lat,lon"
    assert (before == 0 and out.stat().st_size == n_bytes) == (in_memory and not per_row)


def test_a_part_file_stays_within_its_reserved_room(tmp_path):
    nodes = {
        (3, 1): {"a": np.arange(50_000.0), "b": np.int64(3)},
        (0, 17): {"a": np.zeros(50_000), "b": np.int64(4), "c": np.zeros((0, 3))},
    }
    checkpoint.write_part(str(tmp_path), 2, 5, nodes)
    assert checkpoint.part_path(str(tmp_path), 2, 5).stat().st_size <= checkpoint.part_bytes(nodes)
    assert list(tmp_path.iterdir()) == [checkpoint.part_path(str(tmp_path), 2, 5)]


def test_a_part_that_does_not_fit_leaves_the_previous_one(tmpfs):
    disk = tmpfs("disk", "1m")
    checkpoint.write_part(str(disk), 0, 0, {(0, 0): {"a": np.ones(1000)}})
    with pytest.raises(OSError) as raised:
        checkpoint.write_part(str(disk), 0, 0, {(1, 0): {"a": np.ones(200_000)}})
    assert raised.value.errno == errno.ENOSPC
    assert left_in(disk) == [checkpoint.part_path(str(disk), 0, 0).name]  # no temporary file
    assert list(checkpoint.read_part(checkpoint.part_path(str(disk), 0, 0))) == [(0, 0)]
