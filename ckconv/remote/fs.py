"""fsspec file systems for remote URLs, and one-line errors for what they raise."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from ..errors import MissingDependencyError, RemoteError, UsageError
from . import READ_ONLY, SCHEMES, scheme

PIP_EXTRA = "pip install 'ckconv[remote]'"

#: The package each scheme needs beside fsspec (named in the missing-dependency error).
_DRIVERS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub",
            "http": "aiohttp", "https": "aiohttp", "az": "adlfs", "abfs": "adlfs"}


#: Options used when a call passes none (the command line's --storage-option sets them).
DEFAULT_OPTIONS: dict[str, Any] = {}


def filesystem(url: str, storage_options: Optional[Mapping[str, Any]] = None) -> tuple[Any, str]:
    """The fsspec file system for ``url`` and the path inside it (no scheme)."""
    if storage_options is None:
        storage_options = DEFAULT_OPTIONS
    kind = scheme(url)
    if kind not in SCHEMES:
        raise UsageError(f"{url}: unsupported URL scheme {kind}:// (supported: "
                         f"{', '.join(s + '://' for s in SCHEMES)})")
    try:
        import fsspec
    except ImportError:
        raise MissingDependencyError(
            f"{url}: remote paths need fsspec and its drivers; install them with: "
            f"{PIP_EXTRA}") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as exc:
        driver = _DRIVERS.get(kind, str(exc))
        raise MissingDependencyError(f"{url}: {kind}:// needs the package {driver}; install "
                                     f"it with: {PIP_EXTRA}") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{url}: bad storage options ({exc})") from None
    return fs, path


def check_writable(url: str) -> None:
    if scheme(url) in READ_ONLY:
        raise UsageError(f"{url}: {scheme(url)}:// is read-only; write to s3://, gs://, hf:// "
                         "or a local path")


def translate(exc: BaseException, url: str, doing: str) -> RemoteError:
    """One line for a failed request: what was asked, of which URL, and what to check."""
    if isinstance(exc, FileNotFoundError):
        return RemoteError(f"{url}: no such object or prefix ({doing})")
    if isinstance(exc, PermissionError) or _status(exc) in (401, 403):
        return RemoteError(f"{url}: access denied while {doing}; check the credentials "
                           "(environment, config files or --storage-option) and the bucket "
                           "policy")
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RemoteError(f"{url}: {doing} failed ({detail[:200]})")


def _status(exc: BaseException) -> Optional[int]:
    for attr in ("status", "status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``["endpoint_url=http://h:9000", "client_kwargs.region_name=eu-west-1", "anon=true"]``
    -> nested dict. Values are JSON when they parse as JSON (true, 3, {"a": 1}), else text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--storage-option {pair!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = options
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"--storage-option {pair!r}: {part} already has a value")
        node[leaf] = value
    return options
