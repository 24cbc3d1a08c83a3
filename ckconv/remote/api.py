"""``ckconv.load`` / ``ckconv.save`` for URLs: stage, run the local code, upload.

:mod:`ckconv.api` hands URLs here; everything else about loading and saving stays theirs.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ..errors import CkconvError, UsageError
from .dest import Destination
from .source import Staged, stage

#: Mirrors of the sources loaded in this process, by their local directory (for messages and
#: the overwrite check); an entry goes away with the map that needed it.
_STAGED: "weakref.WeakValueDictionary[str, Staged]" = weakref.WeakValueDictionary()


class _Keeper:
    """Held by a loaded map and each of its tensors: the mirror lives while any of them does."""

    def __init__(self, staged: Staged):
        self.staged = staged
        weakref.finalize(self, staged.close)


def _relabel(exc: CkconvError, *sites: Any) -> CkconvError:
    text = str(exc)
    for site in sites:
        text = site.to_urls(text)
    try:
        new = type(exc)(text)
    except TypeError:
        return exc
    return new


def load(url: str, format: Optional[str] = None, *, read_local: Callable[..., Any],
         storage_options: Optional[Mapping[str, Any]] = None, **options: Any) -> Any:
    """Load a remote checkpoint: mirror it, read it locally with ``read_local`` (the API's
    own ``load``, handed in so that this layer never imports it), fetch the files it reads
    from."""
    staged = stage(url, storage_options)
    try:
        try:
            tmap = read_local(staged.local, format, **options)
        except CkconvError:
            if not staged.unbounded:
                raise
            # The reader needed a file of which only the first bytes were fetched (an
            # HDF5 file in a directory): fetch those whole and read again.
            staged.fetch_files(staged.unbounded)
            staged.unbounded.clear()
            tmap = read_local(staged.local, format, **options)
        staged.fetch_files(tmap.source_files)
    except CkconvError as exc:
        staged.close()
        raise _relabel(exc, staged) from None
    except BaseException:
        staged.close()
        raise
    keeper = _Keeper(staged)
    _STAGED[staged.directory] = staged
    tmap._ckconv_remote = keeper  # type: ignore[attr-defined]
    for tensor in tmap.values():
        try:
            tensor._ckconv_remote = keeper  # type: ignore[attr-defined]
        except AttributeError:  # a tensor type with __slots__: the map's reference must do
            pass
    tmap.source = staged.to_urls(tmap.source)
    tmap.notes[:] = [staged.to_urls(n) for n in tmap.notes]
    return tmap


def _source_urls(tmap: Any) -> list[str]:
    urls = []
    for path in getattr(tmap, "source_files", []):
        for directory, staged in list(_STAGED.items()):
            if os.path.abspath(path).startswith(directory + os.sep):
                urls.append(staged.url_of(path))
    return urls


def save(tmap: Any, url: str, format: Optional[str] = None, *,
         write_local: Callable[..., list[str]],
         storage_options: Optional[Mapping[str, Any]] = None, overwrite: bool = True,
         **options: Any) -> list[str]:
    """Write ``tmap`` locally with ``write_local`` (the API's own ``save``), then upload
    (see :mod:`.dest`)."""
    from .. import formats
    from ..errors import OutputExistsError, listing
    from ..tensormap import TensorMap

    tmap = TensorMap.from_any(tmap)
    fmt = format or formats.for_output(url)
    dest = Destination(url, storage_options)
    try:
        if not overwrite:
            module = formats.get(fmt)
            local = module.output_files(dest.local) if hasattr(module, "output_files") \
                else [dest.local]
            try:
                existing = [dest.remote_of(p) for p in local
                            if dest.fs.exists(dest.remote_of(p))]
            except Exception as exc:  # credentials, network: the store's own words
                from .fs import translate

                raise translate(exc, url, "checking for an existing output") from None
            if existing:
                raise OutputExistsError(f"{listing(existing)} already exists",
                                        api_hint="overwrite=True replaces it",
                                        cli_hint="pass --force to replace it")
        _refuse_overwriting_input(tmap, url)
        if fmt == "tf":
            dest.bring_state_file()
        try:
            notes = write_local(tmap, dest.local, fmt, **options)
        except CkconvError as exc:
            raise _relabel(exc, dest) from None
        uploaded = dest.commit()
        return [dest.to_urls(n) for n in notes] + [f"uploaded {len(uploaded)} object(s) to "
                                                   f"{dest.url_base()}"]
    finally:
        dest.close()


def _refuse_overwriting_input(tmap: Any, url: str) -> None:
    real = _canonical(url)
    stem = real[: -len(".index")] if real.endswith(".index") else real
    for src in _source_urls(tmap):
        s = _canonical(src)
        if s == real or s == stem + ".index" or s.startswith(stem + ".data-"):
            raise UsageError(f"{url}: would overwrite the input file {src}")


def _canonical(url: str) -> str:
    """``memory:///a/b`` and ``memory://a/b`` name one object: compare them alike."""
    import fsspec.core

    scheme = url.split("://", 1)[0].lower()
    return f"{scheme}://{fsspec.core.strip_protocol(url).lstrip('/')}"

