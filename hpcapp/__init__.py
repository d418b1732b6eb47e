"""hpcapp: apply one numpy function to every chunk of a dataset on every MPI rank.

Importing this package is cheap on purpose (no mpi4py, no h5py): thousands of ranks import it
at once from a shared file system, and ``hpcapp --help`` must answer instantly.
"""

from hpcapp.kernels.api import kernel

__version__ = "0.1.0"
__all__ = ["__version__", "kernel"]
