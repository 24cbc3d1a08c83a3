"""The command line: the only part of ckconv that prints or exits.

``main`` parses arguments (options may stand anywhere), runs one command and turns
:class:`ckconv.CkconvError` into one ``error: ...`` line and an exit status.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
