"""``hpcapp show``: print the results and provenance of an output file (no MPI needed)."""

from __future__ import annotations

from pathlib import Path

from hpcapp.errors import UsageError
from hpcapp.io.dims import NETCDF_DIM_ONLY
from hpcapp.text import plural


def describe(path: str) -> str:
    """Return a human-readable report of an hpcapp output file."""
    import h5py
    import numpy as np

    file = Path(path)
    if not file.is_file() or not h5py.is_hdf5(file):
        raise UsageError(f"{path!r} is not an HDF5 file")
    lines: list[str] = []
    with h5py.File(file, "r") as h5:
        if "hpcapp_version" not in h5.attrs:
            raise UsageError(f"{path!r} is not an hpcapp output file (no hpcapp_version)")
        lines.append(f"{path}")
        lines.append("provenance:")
        for key in sorted(h5.attrs):
            lines.append(f"  {key:<15} {_text(h5.attrs[key])}")
        lines.append("results:")
        with np.printoptions(threshold=20, precision=6, linewidth=100):
            for key, dataset in h5["result"].items():
                if _text(dataset.attrs.get("NAME", "")).startswith(NETCDF_DIM_ONLY):
                    continue  # a netCDF dimension with no values (see hpcapp.io.output)
                value = dataset[()]
                shown = str(value).replace("\n", "\n" + " " * 18)
                lines.append(f"  {key:<15} {shown}")
        if "timing" in h5:
            timing = h5["timing"][()]
            columns = [_text(c) for c in h5["timing"].attrs["columns"]]
            lines.append(f"timing ({plural(timing.shape[0], 'rank')}; min / mean / max):")
            for index, column in enumerate(columns):
                values = timing[:, index]
                lines.append(
                    f"  {column:<15} {values.min():.4g} / {values.mean():.4g} / {values.max():.4g}"
                )
    return "\n".join(lines)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
