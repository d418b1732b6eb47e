"""Partials and results: checking what a kernel returned, and results carrying HDF5 attributes.

Nothing here imports MPI; numpy is imported late (``import hpcapp`` stays cheap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpcapp.errors import KernelError
from hpcapp.kernels.hookspec import Partial


class ResultArray:
    """Marker base: see :func:`with_attrs`."""

    attrs: dict[str, Any]  # the HDF5 attributes of the result dataset


def with_attrs(array: Any, **attrs: Any) -> Any:
    """Return ``array`` as an ndarray carrying HDF5 attributes for its result dataset.

    A finalize function may return such arrays; the writer stores ``attrs`` on the dataset
    (e.g. ``rounded``: why the value is not exact). Plain arrays have none.
    """
    import numpy as np

    marked: ResultArray = np.asarray(array).view(_attrs_array_type())
    marked.attrs = dict(attrs)
    return marked


def _attrs_array_type() -> type[Any]:
    """Return the ndarray subclass that carries ``attrs`` (built late: numpy imports late)."""
    global _ATTRS_ARRAY
    if _ATTRS_ARRAY is None:
        import numpy as np

        class AttrsArray(np.ndarray, ResultArray):
            """An ndarray with HDF5 attributes for its result dataset."""

            attrs: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance

            def __reduce__(self) -> tuple[Any, ...]:
                # Pickled (hpcapp.run(root=None) broadcasts results) with its attributes.
                return _restore, (np.asarray(self), self.attrs)

        _ATTRS_ARRAY = AttrsArray
    return _ATTRS_ARRAY


_ATTRS_ARRAY: type[Any] | None = None


def _restore(array: Any, attrs: dict[str, Any]) -> Any:
    """Unpickle a :func:`with_attrs` array."""
    return with_attrs(array, **attrs)


def keep_attrs(value: Any) -> Any:
    """Return ``value`` as an array, keeping a :func:`with_attrs` array as it is."""
    import numpy as np

    return value if isinstance(value, ResultArray) else np.asarray(value)


def as_partial(result: Any, kernel_name: str) -> Partial:
    """Check that a kernel returned a dict of numeric arrays, and make them arrays."""
    import numpy as np

    if not isinstance(result, Mapping) or not result:
        raise KernelError(
            f"kernel {kernel_name!r} must return a non-empty dict of numpy arrays, "
            f"got {type(result).__name__}"
        )
    partial: Partial = {}
    for key, value in result.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise KernelError(f"kernel {kernel_name!r} returned a non-identifier key {key!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise KernelError(
                f"kernel {kernel_name!r} returned {key!r} with dtype {array.dtype}: "
                "only bool, integer and float arrays can be combined and stored"
            )
        partial[key] = array
    return partial


def check_compatible(left: Partial, right: Partial) -> None:
    """Raise KernelError unless two partials have the same keys, shapes and dtypes."""
    if left.keys() != right.keys():
        raise KernelError(f"partials have different keys: {sorted(left)} vs {sorted(right)}")
    for key, value in left.items():
        other = right[key]
        if value.shape != other.shape or value.dtype != other.dtype:
            raise KernelError(
                f"key {key!r} differs between chunks: shape {value.shape} dtype {value.dtype} "
                f"vs shape {other.shape} dtype {other.dtype}"
            )
