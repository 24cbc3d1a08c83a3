"""The exception hierarchy: every error ckconv raises derives from CkconvError.

Messages are one line and name the file and the tensor. A message says what went wrong in
the library's terms; where a remedy differs between the API and the command line (a
keyword argument or a flag), the error carries both: ``str(exc)`` gives the API's, the CLI
prints :attr:`CkconvError.cli_message` with the flag. The CLI prints ``error: <message>``
and exits 1 (2 for :class:`UsageError`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional


class CkconvError(Exception):
    """Root of every error ckconv raises on purpose.

    Args:
        message: what went wrong, one line.
        api_hint: the remedy in library terms (``overwrite=True replaces it``).
        cli_hint: the same remedy on the command line (``pass --force to replace it``).
    """

    def __init__(self, message: str = "", *, api_hint: Optional[str] = None,
                 cli_hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.api_hint = api_hint
        self.cli_hint = cli_hint

    def __str__(self) -> str:
        return _join(self.message, self.api_hint)

    @property
    def cli_message(self) -> str:
        """The message with the command line's remedy."""
        return _join(self.message, self.cli_hint or self.api_hint)


def _join(message: str, hint: Optional[str]) -> str:
    return f"{message}; {hint}" if hint else message


class UsageError(CkconvError):
    """The caller asked for something that cannot be done (bad option, bad path)."""


class FormatError(CkconvError):
    """A file is not of the format it was read as, or not of any known format."""


class CorruptCheckpointError(FormatError):
    """A file claims to be a checkpoint but its bytes are damaged or inconsistent."""


class UnsupportedError(CkconvError):
    """A tensor (dtype, name, layout) cannot be represented in the target format."""


class MissingDependencyError(CkconvError):
    """An optional package is needed for this file; the message holds the pip command."""


class MappingError(CkconvError):
    """A name-mapping rule is invalid or does not fit the tensors it was applied to."""


class OutputExistsError(UsageError):
    """The destination exists and replacing it was not asked for."""


class WriteError(CkconvError):
    """Writing the output failed (disk full, permission denied, read-only directory)."""


def listing(items: Iterable[object], limit: int = 5) -> str:
    """``a, b, c and 7 more``: long lists in messages are cut, with a count."""
    shown: list[str] = []
    extra = 0
    for item in items:
        if len(shown) < limit:
            shown.append(str(item))
        else:
            extra += 1
    return ", ".join(shown) + (f" and {extra} more" if extra else "")


def plural(count: int, noun: str, plural_form: Optional[str] = None) -> str:
    """``1 tensor``, ``3 tensors``."""
    return f"{count} {noun if count == 1 else (plural_form or noun + 's')}"


class RemoteError(CkconvError):
    """Object storage refused or failed a request (missing object, no permission, network)."""
