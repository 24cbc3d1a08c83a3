"""The exception hierarchy: every error ckconv raises derives from CkconvError.

The CLI prints ``error: <message>`` for these and exits 1; anything else is a bug.
"""

from __future__ import annotations


class CkconvError(Exception):
    """Root of every error ckconv raises on purpose."""


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


class RemoteError(CkconvError):
    """Object storage refused or failed a request (missing object, no permission, network)."""
