"""Human-readable byte sizes (``--max-shard-size 2GB``, ``max_shard_size="2GB"``)."""

from __future__ import annotations

import re
from typing import Union

from .errors import UsageError

# Decimal units follow SI (as disk vendors and the Hugging Face hub use them); the *iB
# units are binary. A bare "K"/"M"/"G" is taken as the SI unit as well.
_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}

_PATTERN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")


def parse_size(text: Union[str, int]) -> int:
    """Parse ``"2GB"``, ``"512MiB"``, ``"1.5 GB"`` or ``"1000"`` into a number of bytes.

    Raises UsageError for anything else (negative numbers, unknown units, fractions of a
    byte).
    """
    if isinstance(text, bool):
        raise UsageError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"invalid size {text}: must not be negative")
        return text
    if not isinstance(text, str):
        raise UsageError(f"invalid size {text!r}: expected a string such as '2GB'")
    m = _PATTERN.fullmatch(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise UsageError(f"invalid size {text!r}: expected a number with an optional unit "
                         "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. '2GB'")
    number = m.group(1)
    if "." in number:
        # Exact decimal arithmetic: "1.1GB" must be 1100000000, not a float rounding of it.
        whole, _, frac = number.partition(".")
        scaled = int(whole or "0") * _UNITS[unit] * 10 ** len(frac) + int(frac or "0") * _UNITS[unit]
        value, rest = divmod(scaled, 10 ** len(frac))
        if rest:
            raise UsageError(f"invalid size {text!r}: not a whole number of bytes")
        return value
    return int(number) * _UNITS[unit]
