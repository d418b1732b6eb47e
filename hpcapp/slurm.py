"""SLURM: render batch scripts for hpcapp commands, and record the SLURM context (placeholder)."""

from __future__ import annotations

from typing import Any

from hpcapp.errors import UsageError


def slurm_context() -> dict[str, Any]:
    """Return provenance attributes describing the SLURM job, if running inside one."""
    return {}


def slurm_command(args: Any) -> int:
    """``hpcapp slurm``: not implemented yet."""
    raise UsageError("hpcapp slurm is not implemented yet")
