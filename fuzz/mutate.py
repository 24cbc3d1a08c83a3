"""Byte-level mutations in the style of AFL/libFuzzer, as plain data so hypothesis can shrink them.

A mutation is a tuple ``(op, pos, arg)`` of non-negative integers; :func:`apply` interprets
``pos`` modulo the current length, so any tuple is valid on any input. The interesting
values are the ones that break parsers: zero, all-ones, sign bits, lengths just past the
end, and overlong varints (the length fields of SSTables, protos and string tensors).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

Mutation = tuple[int, int, int]

_INTERESTING_8 = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x10, 0x20, 0x40)
_INTERESTING_32 = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                   0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE)
_INTERESTING_64 = (0, 1 << 31, 1 << 32, 1 << 40, 1 << 62, (1 << 63) - 1, 1 << 63,
                   (1 << 64) - 1)

OPS = ("flip_bit", "set_byte", "set_u32", "set_u64", "insert", "delete", "truncate",
       "duplicate", "set_varint", "add_byte", "swap_chunks")


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _overwrite(buf: bytearray, pos: int, chunk: bytes) -> None:
    end = min(len(buf), pos + len(chunk))
    buf[pos:end] = chunk[: end - pos]


def apply_one(buf: bytearray, mutation: Mutation) -> None:
    op, pos, arg = mutation
    op %= len(OPS)
    name = OPS[op]
    n = len(buf)
    if n == 0:
        if name == "insert":
            buf += arg.to_bytes(8, "little")[: 1 + arg % 8]
        return
    pos %= n
    if name == "flip_bit":
        buf[pos] ^= 1 << (arg & 7)
    elif name == "set_byte":
        buf[pos] = _INTERESTING_8[arg % len(_INTERESTING_8)] if arg & 0x100 else arg & 0xFF
    elif name == "set_u32":
        v = _INTERESTING_32[arg % len(_INTERESTING_32)] if arg & 0x100 else (arg >> 9) & 0xFFFFFFFF
        _overwrite(buf, pos, struct.pack("<I", v))
    elif name == "set_u64":
        v = _INTERESTING_64[arg % len(_INTERESTING_64)] if arg & 0x100 else (arg >> 9) & ((1 << 64) - 1)
        _overwrite(buf, pos, struct.pack("<Q", v))
    elif name == "insert":
        count = 1 + arg % 16
        buf[pos:pos] = bytes(((arg >> 4) + i * 37) & 0xFF for i in range(count))
    elif name == "delete":
        del buf[pos:pos + 1 + arg % 64]
    elif name == "truncate":
        del buf[pos:]
    elif name == "duplicate":
        src = arg % n
        chunk = bytes(buf[src:src + 1 + (arg >> 8) % 64])
        buf[pos:pos] = chunk
    elif name == "set_varint":
        # A varint length: sometimes huge, sometimes overlong (10+ bytes), sometimes small.
        v = _INTERESTING_64[arg % len(_INTERESTING_64)] if arg & 0x100 else arg >> 9
        raw = _varint(v)
        if arg & 0x200:
            raw = b"\xff" * 10 + raw  # overlong: more continuation bytes than any varint may have
        _overwrite(buf, pos, raw)
    elif name == "add_byte":
        buf[pos] = (buf[pos] + (arg % 35) - 17) & 0xFF
    elif name == "swap_chunks":
        other = arg % n
        size = 1 + (arg >> 8) % 32
        a, b = bytes(buf[pos:pos + size]), bytes(buf[other:other + size])
        _overwrite(buf, pos, b)
        _overwrite(buf, other, a)


def apply(data: bytes, mutations: Sequence[Mutation]) -> bytes:
    buf = bytearray(data)
    for m in mutations:
        apply_one(buf, m)
    return bytes(buf)


def random_mutations(rng: random.Random, max_count: int = 8) -> list[Mutation]:
    """Mutations for the RNG-driven loop (the long campaign without atheris)."""
    count = 1 + int(rng.expovariate(0.5)) % max_count
    return [(rng.randrange(len(OPS)), rng.getrandbits(32), rng.getrandbits(40))
            for _ in range(count)]
