"""The presets shipped with ckconv: one TOML file each in ``presets/``.

Adding a preset is adding a file there; its name is the file name without ``.toml``.
Kept apart from the rule engine so that ``ckconv --help`` lists presets cheaply.
"""

from __future__ import annotations

import os
import re
from typing import Optional

PRESET_SUFFIX = ".toml"

#: The presets lie beside this module as plain files (package data; ckconv is never run
#: from a zip: its compiled kernels could not be loaded from one either). Reading them
#: with os rather than importlib.resources keeps ~8 ms of imports out of every run.
PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(n[: -len(PRESET_SUFFIX)] for n in os.listdir(PRESET_DIR)
                  if n.endswith(PRESET_SUFFIX))


def preset_text(name: str) -> Optional[str]:
    """The TOML text of preset ``name``, or None if there is no such preset."""
    path = os.path.join(PRESET_DIR, name + PRESET_SUFFIX)
    if not re.fullmatch(r"[\w.-]+", name) or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()
