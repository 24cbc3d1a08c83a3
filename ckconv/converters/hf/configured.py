"""Presets that depend on a model's config.json (layer counts, head counts).

A preset may write ``${name}`` for an integer from the config (``${num_attention_heads}``)
and ``${range(name)}`` for the list ``["0", "1", ..., "<value - 1>"]`` (split/merge parts,
one per layer). The values are filled in before the TOML is parsed; a preset that needs
them and gets no config is an error naming the keys and ``--config``.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ...errors import UsageError

PLACEHOLDER = re.compile(r"\$\{(?:(range)\((\w+)\)|(\w+))\}")


def needed_keys(text: str) -> list[str]:
    return sorted({m.group(2) or m.group(3) for m in PLACEHOLDER.finditer(text)})


def fill(text: str, config: Optional[dict[str, Any]], preset: str) -> str:
    """The preset's text with its placeholders replaced by the config's values."""
    keys = needed_keys(text)
    if not keys:
        return text
    if config is None:
        raise UsageError(f"preset {preset} needs {', '.join(keys)} from the model's "
                         "config.json", api_hint="pass its contents as config=",
                         cli_hint="pass --config CONFIG.json")

    def value(key: str) -> int:
        v = config.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise UsageError(f"preset {preset} needs {key} in the model's config as a "
                             f"non-negative integer, got {v!r}")
        return v

    def sub(m: re.Match) -> str:
        if m.group(1):
            return "[" + ", ".join(f'"{i}"' for i in range(value(m.group(2)))) + "]"
        return str(value(m.group(3)))

    return PLACEHOLDER.sub(sub, text)
