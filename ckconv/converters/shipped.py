"""The presets shipped with ckconv: one TOML file each in ``presets/``.

Adding a preset is adding a file there; its name is the file name without ``.toml``.
Kept apart from the rule engine so that ``ckconv --help`` lists presets cheaply.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Optional

PRESET_SUFFIX = ".toml"


def _preset_dir() -> Any:
    return resources.files("ckconv.converters") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.name[: -len(PRESET_SUFFIX)] for p in _preset_dir().iterdir()
                  if p.name.endswith(PRESET_SUFFIX))


def preset_text(name: str) -> Optional[str]:
    """The TOML text of preset ``name``, or None if there is no such preset."""
    path = _preset_dir() / (name + PRESET_SUFFIX)
    if not re.fullmatch(r"[\w.-]+", name) or not path.is_file():
        return None
    return path.read_text(encoding="utf-8")
