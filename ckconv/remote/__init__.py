"""Checkpoints in object storage: ``s3://``, ``gs://``, ``hf://``, ``http(s)://``, ``memory://``.

Remote paths go through fsspec (``pip install 'ckconv[remote]'``). The local readers and
writers stay exactly as they are (their fast paths use file descriptors: ``os.pread``,
``mmap``, ``copy_file_range``); remote I/O is a layer around them:

* **Sources** are *staged* (:mod:`.source`): the remote directory is mirrored into a local
  temporary directory as sparse placeholders of the right sizes, the bytes a reader needs to
  list tensors (a TF ``.index``, a safetensors header, a zip directory and ``data.pkl``) are
  fetched into them, and the normal reader opens the mirror. A conversion then fetches the
  files the map reads from (:attr:`TensorMap.source_files`) in full, with ranged requests on
  several threads (:mod:`.fetch`: bounded memory, retries that resume where a dropped
  connection stopped), before any tensor byte is read. ``inspect`` fetches the headers only.
* **Destinations** are written by the normal atomic writers into a local temporary
  directory, then uploaded (:mod:`.dest`): data files first, the files that make a
  checkpoint visible (TF ``.index``, shard index, ``checkpoint`` state) last, each upload a
  single PUT or a multipart upload that is completed only when all its parts are in. A
  failure removes the objects already uploaded: a failed conversion leaves nothing at DST.

The local temporary directory lives under ``$CKCONV_TMPDIR`` (else ``$TMPDIR``): it needs
room for the source and the output.
"""

from __future__ import annotations

import re

#: Schemes ckconv treats as remote (any other ``xyz://`` is refused with a clear error).
SCHEMES = ("s3", "s3a", "gs", "gcs", "hf", "http", "https", "memory", "az", "abfs")
READ_ONLY = ("http", "https")

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def scheme(path: object) -> str:
    """The URL scheme of ``path`` in lower case; "" for a local path."""
    if not isinstance(path, str):
        return ""
    m = _URL.match(path)
    return m.group(1).lower() if m else ""


def is_url(path: object) -> bool:
    """True for ``scheme://...`` (remote, or an unsupported scheme refused by name)."""
    return scheme(path) != ""

