"""Byte sizes: read as people write them (``"512KiB"``, ``"1.5 MB"``, ``"0 B"``:
`parse_size`), and written as tracemalloc writes them (`format_size`)."""

from __future__ import annotations

import re
from typing import Union

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Union[str, int, float]) -> int:
    """Bytes in *value*: a number of bytes, or text such as ``"512KiB"``.

    ``KiB``/``MiB``/``GiB`` (and bare ``K``/``M``/``G``) are powers of 1024,
    ``KB``/``MB``/``GB`` powers of 1000.  Raises ValueError with the accepted
    forms on anything else, including negative sizes.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value!r}")
        return int(value)
    match = _SIZE.match(value) if isinstance(value, str) else None
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"not a size: {value!r} (expected a number of bytes with an "
            "optional unit: B, KiB, MiB, GiB, KB, MB, GB; for example '512KiB')"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: float, sign: bool = False) -> str:
    """Format a byte count as tracemalloc does: ``"12.3 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 100 and unit != "B":
            return ("%+.1f %s" if sign else "%.1f %s") % (size, unit)
        if abs(size) < 10 * 1024 or unit == "TiB":
            return ("%+.0f %s" if sign else "%.0f %s") % (size, unit)
        size /= 1024
    raise AssertionError("unreachable")
