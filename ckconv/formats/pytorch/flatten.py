"""The one rule that turns whatever ``torch.load`` returned into flat ``name -> tensor`` pairs.

1. If the top level is a dict holding ``state_dict``, ``model_state_dict`` or ``model``
   (looked for in that order) whose value is a dict, only that dict is converted
   ("unwrapped"): this covers PyTorch Lightning ``.ckpt`` files and the usual
   ``torch.save({"epoch": e, "model_state_dict": ..., "optimizer_state_dict": ...})``
   training checkpoints. Everything beside it is left out with a note.
2. Nested dicts (and lists/tuples) are flattened by joining keys (indexes) with ``.``,
   so ``{"encoder": {"weight": t}}`` gives ``encoder.weight``, the names
   ``model.state_dict()`` itself would use. Non-string keys are written with ``str()``.
3. A bare tensor saved on its own is named ``tensor``.
4. Anything that is not a tensor (epoch, hyper-parameters, version strings) is reported in
   a note and left out: a checkpoint format stores tensors only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

UNWRAP_KEYS = ("state_dict", "model_state_dict", "model")
BARE_TENSOR_NAME = "tensor"


@dataclass
class Flat:
    tensors: list[tuple[str, Any]] = field(default_factory=list)
    #: non-tensor leaves among the converted entries: (dotted name, value)
    others: list[tuple[str, Any]] = field(default_factory=list)
    #: top-level entries beside the unwrapped dict, left out: (key, value, tensors inside)
    outside: list[tuple[str, Any, int]] = field(default_factory=list)
    #: names that appeared twice after flattening (the later one is left out)
    clashes: list[str] = field(default_factory=list)
    unwrapped: Optional[str] = None


def _walk(obj: Any, prefix: str, is_tensor: Callable[[Any], bool],
          leaf: Callable[[str, Any], None], depth: int = 0) -> None:
    if is_tensor(obj):
        leaf(prefix, obj)
    elif isinstance(obj, Mapping) and depth < 100:
        for k, v in obj.items():
            _walk(v, f"{prefix}.{k}" if prefix else str(k), is_tensor, leaf, depth + 1)
    elif isinstance(obj, (list, tuple)) and depth < 100 and obj:
        for i, v in enumerate(obj):
            _walk(v, f"{prefix}.{i}" if prefix else str(i), is_tensor, leaf, depth + 1)
    else:
        leaf(prefix, obj)


def flatten(obj: Any, is_tensor: Callable[[Any], bool]) -> Flat:
    flat = Flat()
    seen: set[str] = set()

    def keep(name: str, value: Any) -> None:
        if not is_tensor(value):
            flat.others.append((name, value))
        elif name in seen:
            flat.clashes.append(name)
        else:
            seen.add(name)
            flat.tensors.append((name, value))

    if is_tensor(obj):
        keep(BARE_TENSOR_NAME, obj)
        return flat
    if isinstance(obj, Mapping):
        for key in UNWRAP_KEYS:
            if isinstance(obj.get(key), Mapping):
                flat.unwrapped = key
                break
    if flat.unwrapped is None:
        _walk(obj, "", is_tensor, keep)
        return flat
    for k, v in obj.items():
        if k == flat.unwrapped:
            _walk(v, "", is_tensor, keep)
        else:
            leaves: list[Any] = []
            _walk(v, str(k), is_tensor, lambda _name, leaf: leaves.append(leaf))
            flat.outside.append((str(k), v, sum(1 for leaf in leaves if is_tensor(leaf))))
    return flat


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def notes_for(flat: Flat, shown: int = 8) -> list[str]:
    """Human-readable notes on everything the flattening left out."""
    notes = []
    if flat.unwrapped:
        beside = [f"{k} ({n} tensor{'s' if n != 1 else ''})" if n else f"{k}={_short(v, 60)}"
                  for k, v, n in flat.outside]
        notes.append(f"converted the tensors under {flat.unwrapped!r} only" +
                     (f"; left out beside it: {', '.join(beside)}" if beside else ""))
    others = [(n, v) for n, v in flat.others if n]
    if others:
        items = ", ".join(f"{n}={_short(v)}" for n, v in others[:shown])
        more = f" and {len(others) - shown} more" if len(others) > shown else ""
        what = "entry that is not a tensor" if len(others) == 1 else "entries that are not tensors"
        notes.append(f"left out {len(others)} {what}: {items}{more}")
    if flat.clashes:
        notes.append(f"left out {len(flat.clashes)} tensor(s) whose flattened name was already "
                     f"taken: {', '.join(flat.clashes[:shown])}")
    return notes


#: What a reader's ``convert`` returns for one tensor value: the reason it is left out
#: (a str), or the key of the bytes it views (None: never tied) and a Tensor factory, or
#: several ``(name, key, factory)`` entries (a quantized tensor and its parameters).
Converted = Union[str, tuple[Optional[tuple], Callable[[], Any]],
                  list[tuple[str, Optional[tuple], Callable[[], Any]]]]


def add_flattened(tmap: Any, obj: Any, is_tensor: Callable[[Any], bool],
                  convert: Callable[[str, Any], Converted]) -> None:
    """Flatten ``obj`` into ``tmap``: notes for what is left out, the non-tensor values in
    ``extras["torch_non_tensors"]``, and names viewing the same bytes of the same storage
    as one Tensor object, so writers that can share storage (torch, HDF5) keep them tied
    and the others de-duplicate."""
    flat = flatten(obj, is_tensor)
    tmap.notes.extend(notes_for(flat))
    # The values themselves, for callers who want the epoch or hyper-parameters.
    left = {n: v for n, v in flat.others if n}
    left.update({k: v for k, v, n in flat.outside if not n})
    if left:
        tmap.extras.setdefault("torch_non_tensors", {}).update(left)
    by_view: dict[tuple, Any] = {}
    skipped: list[str] = []
    clashes = len(flat.clashes)
    for name, value in flat.tensors:
        got = convert(name, value)
        if isinstance(got, str):
            skipped.append(got)
            continue
        for entry_name, key, make in (got if isinstance(got, list) else [(name, *got)]):
            if entry_name in tmap:
                flat.clashes.append(entry_name)
            elif key is not None and key in by_view:
                tmap[entry_name] = by_view[key]
            else:
                tensor = make()
                if key is not None:
                    by_view[key] = tensor
                tmap[entry_name] = tensor
    if len(flat.clashes) > clashes:
        tmap.notes.append(f"left out {len(flat.clashes) - clashes} tensor(s) whose name was "
                          f"already taken: {', '.join(flat.clashes[clashes:clashes + 8])}")
    if skipped:
        tmap.notes.append(f"left out {len(skipped)} tensor(s) with a dtype or layout ckconv "
                          f"cannot represent: {', '.join(skipped[:5])}")
