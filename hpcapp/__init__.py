"""hpcapp: apply one numpy function to every chunk of a dataset on every MPI rank.

Importing this package is cheap on purpose (no mpi4py, no h5py): thousands of ranks import it
at once from a shared file system, and ``hpcapp --help`` must answer instantly.
"""

import sys
from pathlib import Path

from hpcapp.kernels.api import kernel

__version__ = "0.1.0"
__all__ = ["__version__", "kernel", "run"]


def __getattr__(name: str) -> object:
    """Import ``hpcapp.run`` on first use: ``import hpcapp`` stays free of MPI and h5py."""
    if name == "run":
        from hpcapp.jobs.library import run

        return run
    raise AttributeError(f"module 'hpcapp' has no attribute {name!r}")


def _refuse_module_file_as_program() -> None:
    """Stop ``python hpcapp/cli/parser.py ...``: a module file run directly does nothing."""
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    if not file or getattr(main, "__spec__", None) is not None:
        return  # python -m ..., python -c, an interactive session
    if Path(__file__).resolve().parent not in Path(file).resolve().parents:
        return  # a program of the user's that imports hpcapp
    from hpcapp.parallel.launch import launcher_rank

    if launcher_rank() == 0:
        name = Path(file).name
        sys.stderr.write(
            f"hpcapp: error: {name} is a module of hpcapp, not a program: run "
            "`python -m hpcapp ...` (or `mpiexec -n N python -m hpcapp ...`)\n"
        )
    raise SystemExit(2)


_refuse_module_file_as_program()
