"""Reading ``torch.save`` files safely, with torch only when ckconv's own reader cannot.

Zip archives (what ``torch.save`` writes since torch 1.6) are read by
:mod:`.torchzip_reader` without torch: its tensors are byte ranges of the file, copied file
to file by writers. What that reader does not handle (a global outside its allow-list,
a big-endian archive) and legacy (pre-1.6) files go to
``torch.load(weights_only=True, mmap=True)``, kept here: ``weights_only`` makes torch's
unpickler refuse every global outside a small allow-list (tensors, storages, plain
containers, numbers, strings), so no code from the file can run. A file that needs more is
reported as such; ckconv never falls back to an unsafe load.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ...dtypes import DType
from ...errors import CorruptCheckpointError, MissingDependencyError, UnsupportedError
from ...tensor import CHUNK, Tensor
from ...tensormap import TensorMap
from .. import sharding
from ... import torch_bridge as bridge
from . import quantized, torchzip_reader
from .flatten import Converted, add_flattened

if TYPE_CHECKING:  # numpy only when values are asked for
    import numpy as np

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


class TorchTensor(Tensor):
    """A tensor loaded by torch (memory-mapped for zip archives)."""

    def __init__(self, t: Any, dtype: DType, source: str):
        super().__init__(dtype, tuple(t.shape))
        self.torch = t
        self._source = source

    def _load(self) -> np.ndarray:
        return bridge.to_numpy(self.torch, self.dtype)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        raw = bridge.raw_bytes(self.torch)
        for start in range(0, raw.numel(), chunk):
            yield memoryview(raw[start:start + chunk].numpy())

    def describe(self) -> str:
        return f"torch tensor in {self._source}"


def is_zip(path: str) -> bool:
    # Imported only on the torch.load path: importing it slows start-up (docs/performance.md).
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False
    except Exception:  # is_zipfile lets BadZipFile out for some broken end records
        return True  # a damaged zip: opening it reports the damage


class _Clamped(io.RawIOBase):
    """A file whose reads never ask for more than is left in it.

    torch's legacy (pre-zip) loader and pickle allocate a buffer of the size a length field
    requests before reading it; clamped, a hostile length costs no more than the file size.
    Having no fileno(), it also keeps torch on its Python read path, which goes through here.
    """

    def __init__(self, f: Any, size: int):
        self._f = f
        self._size = size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b: Any) -> int:
        return self._f.readinto(b)

    def read(self, n: int = -1) -> bytes:
        left = max(self._size - self._f.tell(), 0)
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def readline(self, limit: int = -1) -> bytes:
        return self._f.readline(limit)


def _refusal(path: str, exc: BaseException) -> UnsupportedError:
    msg = _ANSI.sub("", str(exc))
    m = _GLOBAL.search(msg)
    if m:
        what = f"it references {m.group(1)}"
    elif "WeightsUnpickler error:" in msg:
        detail = msg.rsplit("WeightsUnpickler error:", 1)[1].strip().splitlines()
        what = "torch's safe unpickler refused it: " + (detail[0][:200] if detail else "?")
    else:
        what = msg.strip().splitlines()[0][:200] if msg.strip() else "unpickling failed"
    return UnsupportedError(
        f"{path}: loading this pickle would run code stored in the file ({what}); ckconv never "
        "runs pickled code, and nothing was executed. If you trust the file, load it with "
        "torch.load(path, weights_only=False) yourself and torch.save() its state_dict().")


def load_object(path: str) -> Any:
    """``torch.load`` the file safely, translating torch's errors into ckconv's."""
    torch = bridge.require_torch()
    zipped = is_zip(path)
    if zipped:
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except Exception as exc:  # zipfile also raises UnicodeDecodeError, ValueError...
            raise CorruptCheckpointError(f"{path}: damaged zip archive ({exc})") from None
        if any(n.endswith("/constants.pkl") for n in names):
            raise UnsupportedError(f"{path}: a TorchScript archive (torch.jit.save); ckconv reads "
                                   "state dicts saved with torch.save, not scripted modules")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols, TypedStorage...
            if path.endswith(".safetensors"):
                # torch.load hands any path with this suffix to the safetensors library; a
                # misnamed torch file goes in as a file object (no mmap: that needs a path).
                with open(path, "rb") as f:
                    return torch.load(f, map_location="cpu", weights_only=True)
            if zipped:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            with open(path, "rb") as f:  # legacy format: see _Clamped
                return torch.load(_Clamped(f, os.fstat(f.fileno()).st_size), map_location="cpu",
                                  weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError... on damage
        first = _ANSI.sub("", str(exc)).strip().splitlines()
        raise CorruptCheckpointError(f"{path}: torch.load failed: {type(exc).__name__}: "
                                     f"{first[0] if first else ''}") from None


def _is_tensor(torch: Any) -> Any:
    return lambda v: isinstance(v, torch.Tensor)


def tensors_of(obj: Any, path: str, tmap: TensorMap, dequantize: bool = False) -> None:
    """Add the tensors of a loaded object to ``tmap`` (flattening rule, tied tensors)."""
    torch = bridge.require_torch()

    def plain(t: Any) -> Tensor:
        dt = bridge.from_torch_dtype(t.dtype)
        if dt is None:
            raise UnsupportedError(f"{path}: a {t.dtype} tensor ckconv cannot represent")
        return TorchTensor(t.detach(), dt, path)

    def convert(name: str, t: Any) -> Converted:
        if t.is_quantized and t.layout == torch.strided and t.device.type != "meta" and \
                str(t.qscheme()).rpartition(".")[2] in quantized.SCHEMES:
            return quantized.torch_entries(name, t, dequantize, plain)
        dt = bridge.from_torch_dtype(t.dtype)
        if dt is None or t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
            return f"{name} ({t.dtype}, {str(t.layout).rpartition('.')[2]})"
        t = t.detach()
        key = None
        if t.numel():
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                   tuple(t.stride()), t.dtype)
        return key, lambda: TorchTensor(t, dt, path)

    add_flattened(tmap, obj, _is_tensor(torch), convert)


def _torch_for(path: str, what: str) -> None:
    """torch, for a zip archive ckconv's own reader cannot read, or a clear refusal."""
    try:
        bridge.require_torch()
    except MissingDependencyError:
        raise UnsupportedError(
            f"{path}: holds {what}, beyond what ckconv reads without torch (ckconv never runs "
            "code stored in a file, and nothing was executed); torch.load(weights_only=True) "
            f"may read it safely, but torch is not installed: {bridge.INSTALL_HINT}") from None


def _is_legacy(path: str) -> bool:
    from .storage_types import LEGACY_MAGIC as _LEGACY_MAGIC

    try:
        with open(path, "rb") as f:
            return f.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC
    except OSError:
        return False


def read_file(path: str, dequantize: bool = False, skip_unsupported: bool = False) -> TensorMap:
    if torchzip_reader.is_torch_zip(path):
        try:
            return torchzip_reader.read_file(path, dequantize, skip_unsupported)
        except torchzip_reader.NeedsTorch as exc:
            _torch_for(path, exc.what)
    elif _is_legacy(path):
        from . import legacy_reader

        try:
            return legacy_reader.read_file(path, dequantize, skip_unsupported)
        except torchzip_reader.NeedsTorch as exc:
            _torch_for(path, exc.what)
    tmap = TensorMap(source=path, format="torch")
    tensors_of(load_object(path), path, tmap, dequantize)
    tmap.source_files.append(path)
    return tmap

