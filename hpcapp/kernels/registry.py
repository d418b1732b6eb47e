"""Find kernels by name: built-ins, ``package.module:function`` or ``path/file.py:function``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from hpcapp.errors import UsageError
from hpcapp.kernels.api import Kernel, from_function

BUILTIN = {
    "stats": "hpcapp.kernels.nd:stats",  # the column kernel stats, over any dimensions
    "montecarlo": "hpcapp.kernels.montecarlo:montecarlo",
    # Whole-series operators (issue 22): per cell over the records.
    "trend": "hpcapp.kernels.trend:trend",
    "rolling": "hpcapp.kernels.rolling:rolling",
    "anomaly": "hpcapp.kernels.anomaly:anomaly",
    "quantile": "hpcapp.kernels.quantile:quantile",  # whole series, through the transpose
    "median": "hpcapp.kernels.quantile:median",
}


def load_kernel(spec: str) -> Kernel:
    """Import the kernel named by ``spec``; raise UsageError with advice if that fails."""
    if spec in BUILTIN:
        module_name, func_name = BUILTIN[spec].split(":")
        return from_function(getattr(importlib.import_module(module_name), func_name), spec)
    if ":" not in spec:
        import difflib

        close = difflib.get_close_matches(spec, list(BUILTIN), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"unknown kernel {spec!r}{hint}: use a built-in ({', '.join(BUILTIN)}), "
            "package.module:function or path/to/file.py:function"
        )
    target, _, func_name = spec.rpartition(":")
    if target.endswith(".py") or "/" in target:
        module = _load_file(target, spec)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UsageError(
                f"cannot import module {target!r} for kernel {spec!r}: {exc}"
            ) from None
        except Exception as exc:
            raise UsageError(f"importing {target!r} for kernel {spec!r}: {_said(exc)}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UsageError(f"{target!r} has no function {func_name!r} (kernel {spec!r})")
    return from_function(func, spec)


def _load_file(path: str, spec: str) -> object:
    """Import a kernel file as a module under a private name.

    The file's directory goes first on ``sys.path``, as ``python file.py`` puts it, so that the
    kernel imports the modules beside it (``from helper import sq``).
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"kernel file {path!r} does not exist (kernel {spec!r})")
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = f"hpcapp_user_kernel_{abs(hash(str(file.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"kernel file {path!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise UsageError(f"importing kernel file {path!r}: {_said(exc)}") from None
    return module


def _said(exc: Exception) -> str:
    """Return an import failure: a kernel's declaration refused says it all in one sentence."""
    if isinstance(exc, (TypeError, ValueError)) and str(exc).startswith("@hpcapp.kernel on "):
        return str(exc)
    return f"raised {exc!r}"


def builtin_kernels() -> list[Kernel]:
    """Return the built-in kernels, for ``hpcapp kernels``."""
    return [load_kernel(name) for name in BUILTIN]


def list_kernels() -> str:
    """Return the text of ``hpcapp kernels``."""
    lines = ["Built-in kernels (use: hpcapp run NAME [INPUT] -o OUT.h5 -p KEY=VALUE ...):"]
    for kernel in builtin_kernels():
        lines.append(f"  {kernel.name:<11} {kernel.description}")
        for name in kernel.required:
            lines.append(f"  {'':<11}   -p {name}=...   (required)")
        for name, default in kernel.defaults.items():
            lines.append(f"  {'':<11}   -p {name}=...   (default {default!r})")
        if kernel.over:
            lines.append(f"  {'':<11}   --over DIMS   (default: the first dimension)")
    lines.append("User kernels: package.module:function or path/to/file.py:function")
    return "\n".join(lines)
