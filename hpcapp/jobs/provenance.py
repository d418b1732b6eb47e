"""Which code computes a job's result: the kernel's files, its helpers, hpcapp's numeric core.

A checkpoint (or a finished output) records this code identity, and ``--resume`` refuses one
made by other code: resuming would mix partials of the old code with those of the new one.

What counts:

- the kernel's own module file, and the files of the modules its ``combine``, ``finalize`` and
  ``validate`` come from;
- every module imported while importing the kernel, except installed packages (anything under a
  ``site-packages`` or ``dist-packages`` directory) and the standard library: that is the user's
  own code, the helpers beside a kernel file (``from helper import sq``), modules on
  ``PYTHONPATH`` and editable installs, which is what gets edited between two runs of a job.
  Installed packages are versioned by their installer, and hashing them would cost every rank
  a read of hundreds of files. The kernel's own top-level package counts even when installed.
  A module imported lazily, inside the kernel function, is not seen;
- hpcapp's version and the files that decide the numbers: the built-in kernels and the kernel
  contract (``kernels/`` except the registry), ``parallel/engine``, ``parallel/reduce``,
  ``parallel/rows``, ``partition``, and, under ``io/``, the reader, the group labels and CF
  times, CF decoding and many-file reads.
  Files that only decide how a job is launched, checkpointed, written
  or reported (cli, config, app, writer, slurm...) do not count;
- numpy's version, and numba's when the kernel is compiled (its files mention numba, or it
  imported numba).

Nothing here imports MPI: :func:`load_with_code` runs on every rank, and the caller compares.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.registry import BUILTIN, load_kernel

HPCAPP_DIR = Path(__file__).resolve().parent.parent
# hpcapp's files whose change can change the numbers of a result (see the module docstring).
HPCAPP_NUMERIC = (
    "parallel/engine.py",
    "parallel/reduce.py",
    "partition.py",
    "io/reader.py",
    "parallel/rows.py",
    "io/labels.py",
    "io/coding/times.py",
    "io/coding/variables.py",
    "io/series.py",
    "io/sources/stored.py",
    "io/sources/hdf5.py",
    "io/sources/generated.py",
)
NOT_NUMERIC = ("registry.py",)


def load_with_code(spec: str) -> tuple[Kernel, dict[str, Any]]:
    """Import the kernel named by ``spec`` and return it with the identity of its code."""
    before = set(sys.modules)
    kernel = load_kernel(spec)
    loaded = [sys.modules[name] for name in set(sys.modules) - before if name in sys.modules]
    return kernel, code_identity(spec, kernel, loaded)


def code_identity(spec: str, kernel: Kernel, loaded: list[Any]) -> dict[str, Any]:
    """Return the versions and file hashes that determine what ``kernel`` computes."""
    files: dict[str, str] = {}
    for path in _hpcapp_files():
        files[_name(path)] = _digest(path)
    kernel_files = [] if spec in BUILTIN else _kernel_files(spec, kernel, loaded)
    for path in kernel_files:
        files[_name(path)] = _digest(path)
    from hpcapp import __version__

    versions = {"hpcapp": __version__, "numpy": _version("numpy")}
    names = {getattr(module, "__name__", "") for module in loaded}
    compiled = "numba" in names or any(b"numba" in p.read_bytes() for p in kernel_files)
    if spec == "stats" or compiled:
        versions["numba"] = _version("numba")
    return {"versions": versions, "files": files}


CHANGES = {"gone": "is no longer used", "new": "is new", "edited": "was edited"}
RANK_DIFFERENCES = {"gone": "only on rank 0", "new": "not on rank 0", "edited": "differs"}


def describe_change(
    saved: dict[str, Any] | None, current: dict[str, Any], words: dict[str, str] = CHANGES
) -> str:
    """Say what differs between two code identities: versions, then files by name."""
    if not isinstance(saved, dict):
        return "it was made by a version of hpcapp that did not record its code"
    changes = []
    old_versions, new_versions = saved.get("versions", {}), current.get("versions", {})
    for key in sorted(set(old_versions) | set(new_versions)):
        if old_versions.get(key) != new_versions.get(key):
            changes.append(f"{key} {old_versions.get(key)} -> {new_versions.get(key)}")
    old_files, new_files = saved.get("files", {}), current.get("files", {})
    for name in sorted(set(old_files) | set(new_files)):
        if name not in new_files:
            changes.append(f"{name} {words['gone']}")
        elif name not in old_files:
            changes.append(f"{name} {words['new']}")
        elif old_files[name] != new_files[name]:
            changes.append(f"{name} {words['edited']}")
    return "; ".join(changes) or "nothing"


def disagreement(codes: list[dict[str, Any]]) -> str | None:
    """Return why the ranks' code identities differ (given every rank's), or None if they agree."""
    digests = [digest_of(code) for code in codes]
    groups: dict[str, list[int]] = {}
    for rank, digest in enumerate(digests):
        groups.setdefault(digest, []).append(rank)
    if len(groups) == 1:
        return None
    details = []
    for ranks in groups.values():
        if ranks[0] != 0:
            change = describe_change(codes[0], codes[ranks[0]], RANK_DIFFERENCES)
            verb = "differs" if len(ranks) == 1 else "differ"
            details.append(f"{_ranks(ranks)} {verb} from rank 0: {change}")
    return (
        f"the ranks imported different kernel code ({'; '.join(details)}). This is a launch "
        "mistake: every rank must import the same files (check the working directory, "
        "PYTHONPATH and the files on every node)"
    )


def digest_of(code: dict[str, Any]) -> str:
    """Return one short hash of a whole code identity (to compare ranks cheaply)."""
    text = repr(sorted((k, sorted(v.items())) for k, v in code.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _kernel_files(spec: str, kernel: Kernel, loaded: list[Any]) -> list[Path]:
    """Return the files of the kernel's modules and of the helpers imported with it."""
    own = [sys.modules.get(getattr(f, "__module__", "") or "") for f in _functions(kernel)]
    main_file = _file_of(own[0])
    if own[0] is None or main_file is None:
        return []
    # The kernel's own package counts even when it is installed among the libraries.
    root = main_file.parent
    top = sys.modules.get(own[0].__name__.partition(".")[0])
    top_file = _file_of(top)
    if top is not own[0] and top_file is not None and hasattr(top, "__path__"):
        root = top_file.parent
    found = {main_file}
    for module in [*own[1:], *loaded]:
        path = _file_of(module)
        if path is not None and (root in path.parents or not _is_library(path)):
            found.add(path)
    return sorted(found)


def _is_library(path: Path) -> bool:
    """Return whether ``path`` belongs to an installed package or the standard library."""
    parents = set(path.parents)
    if any(p.name in ("site-packages", "dist-packages") for p in parents):
        return True
    return bool(parents & _library_dirs())


def _functions(kernel: Kernel) -> list[Any]:
    extra = (kernel.combine, kernel.finalize, kernel.validate, kernel.prepare)
    return [kernel.func, *(f for f in extra if callable(f))]


def _file_of(module: Any) -> Path | None:
    file = getattr(module, "__file__", None)
    if not file or not os.path.isfile(file):
        return None
    return Path(file).resolve()


def _hpcapp_files() -> list[Path]:
    kernels = [p for p in (HPCAPP_DIR / "kernels").glob("*.py") if p.name not in NOT_NUMERIC]
    return sorted([*kernels, *(HPCAPP_DIR / name for name in HPCAPP_NUMERIC)])


def _library_dirs() -> set[Path]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    return {Path(sysconfig.get_path(name)).resolve() for name in names}


def _name(path: Path) -> str:
    """Name a file in messages: hpcapp's relative to the package, the user's by full path."""
    if HPCAPP_DIR in path.parents:
        return f"hpcapp/{path.relative_to(HPCAPP_DIR).as_posix()}"
    return str(path)


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    except OSError as exc:
        raise UsageError(f"cannot read {path} to identify the kernel's code: {exc}") from None


def _version(package: str) -> str | None:
    """Return an installed package's version, without importing importlib.metadata if it can.

    That import costs a rank ~20 ms of start-up (more when thousands start at once): an imported
    package says its version itself, and an installed one has it in its ``dist-info`` name.
    """
    found = getattr(sys.modules.get(package), "__version__", None)
    if isinstance(found, str):
        return found
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin is not None:
        site = Path(spec.origin).parent.parent
        infos = list(site.glob(f"{package}-*.dist-info"))
        if len(infos) == 1:
            return infos[0].name[len(package) + 1 : -len(".dist-info")]
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"


def holds_result(output: str, identity: dict[str, Any]) -> bool:
    """Return True if ``output`` is the finished result of the job described by ``identity``.

    An output of this same job computed by other code is refused: "nothing to resume" would
    keep a result the current code would not give.
    """
    import h5py

    if not Path(output).is_file():
        return False
    try:
        with h5py.File(output, "r", locking=False) as h5:
            saved = json.loads(h5.attrs.get("job_identity", "{}"))
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict):
        return False
    same_job = {k: v for k, v in saved.items() if k != "code"} == {
        k: v for k, v in identity.items() if k != "code"
    }
    if same_job and saved.get("code") != identity["code"]:
        why = "it is not the result the current code gives"
        raise UsageError(code_changed(f"output {output!r}", saved, identity, why))
    return saved == identity


def check_identity(directory: str, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse a checkpoint made for another job (or by other code), naming what differs."""
    differ = sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
    if differ == ["code"]:
        why = "resuming would mix results of the old and the new code"
        raise UsageError(code_changed(f"checkpoint {directory!r}", saved, current, why))
    differ = [key for key in differ if key != "code"]
    if differ:
        details = "; ".join(
            f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}" for k in differ
        )
        raise UsageError(
            f"checkpoint {directory!r} was made for a different job ({details}). "
            "Run with the original settings, or remove the checkpoint to start over"
        )


def code_changed(what: str, saved: dict[str, Any], current: dict[str, Any], why: str) -> str:
    """Say that ``what`` came from other code, what changed, why that matters, and what to do."""
    change = describe_change(saved.get("code"), current["code"])
    return (
        f"{what} was computed by other code than this run's ({change}): {why}. Run with "
        "--overwrite instead of --resume to start over with the current code"
    )
