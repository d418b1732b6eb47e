"""``--resample DIM=FREQ``: the option's syntax alone (no numpy: JobConfig checks it at start-up).

The periods themselves are :mod:`hpcapp.io.resample`'s.
"""

from __future__ import annotations

import re

_FREQUENCY = re.compile(r"(\d*)(D|MS|M|YS|Y|AS|A)")
_UNITS = {"D": "D", "M": "M", "MS": "M", "Y": "Y", "YS": "Y", "A": "Y", "AS": "Y"}


def parse_resample(text: str) -> tuple[str, str, int]:
    """Split ``time=3M`` into (``time``, ``M``, 3); raise ValueError saying what is allowed."""
    name, equals, frequency = str(text).partition("=")
    name, frequency = name.strip(), frequency.strip()
    if not equals or not name:
        raise ValueError(f"--resample takes DIM=FREQ (e.g. time=1M), got {text!r}")
    found = _FREQUENCY.fullmatch(frequency)
    if found is None or (found.group(1) and int(found.group(1)) < 1):
        raise ValueError(
            f"--resample {text}: unknown frequency {frequency!r}: use ND (days), NM or NMS "
            "(months), NY, NYS or NA (years), e.g. 1D, 5D, 1M, 3MS, 1Y"
        )
    return name, _UNITS[found.group(2)], int(found.group(1) or 1)


def check(value: str | None) -> str | None:
    """Return why ``--resample`` is malformed, or None (JobConfig's check)."""
    if value is None:
        return None
    try:
        parse_resample(value)
    except ValueError as exc:
        return str(exc)
    return None
