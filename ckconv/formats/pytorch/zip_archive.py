"""The zip container of a ``torch.save`` file, read as untrusted input.

``torch.save`` (since torch 1.6) writes an ordinary zip archive whose members are *stored*
(never compressed) and whose data members are padded so their bytes start on 64-byte
boundaries. That makes every tensor's bytes a plain byte range of the file, which is all
this module finds: where each member's data lies. Nothing is decompressed.

Every offset and size comes from the file and is checked against the file's size before it
is used, and members may not overlap, so a damaged or hostile archive gives a one-line
:class:`CorruptCheckpointError` naming the file, never a crash, a hang or a large
allocation. ZIP64 (archives or members past 4 GiB) is supported.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ...errors import CorruptCheckpointError, UnsupportedError

# The record layouts (APPNOTE.TXT), shared with torchzip_writer.
EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
ZIP64_LOCATOR = struct.Struct("<4sLQL")
ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header (46 bytes)
LOCAL = struct.Struct("<4s5H3L2H")  # local file header (30 bytes)

EOCD_SIG = b"PK\x05\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
ZIP64_EXTRA_ID = 0x0001

_MAX_COMMENT = 0xFFFF
#: The newest "version needed to extract" of the zip specification (6.3); torch writes 2.0,
#: or 4.5 for ZIP64. A larger value means a feature no reader here understands, or damage.
MAX_VERSION_NEEDED = 63
#: A central directory entry costs at least 46 bytes, so a real directory of this size would
#: list millions of members; a claim beyond it is damage (and would cost that much memory).
MAX_DIRECTORY_BYTES = 256 << 20


@dataclass(frozen=True)
class Member:
    """One archive member: where its bytes lie in the file."""

    name: str
    #: offset of the local header; the member occupies [header_offset, data_offset + size)
    header_offset: int
    data_offset: int
    size: int
    crc32: int
    method: int


@dataclass
class Directory:
    path: str
    file_size: int
    members: dict[str, Member]
    #: member names in directory order (torch names the archive after the first one)
    order: list[str]
    #: where the central directory starts: member data must end before it
    data_limit: int


def _corrupt(path: str, what: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"{path}: damaged zip archive ({what})")


def _pread(fd: int, size: int, offset: int, path: str, what: str) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise _corrupt(path, f"{what} at offset {offset} runs past the end of the file")
    return data


def _find_end_record(fd: int, file_size: int, path: str) -> tuple[int, tuple]:
    """Offset and fields of the end-of-central-directory record (the last consistent one)."""
    tail_size = min(file_size, EOCD.size + _MAX_COMMENT)
    tail = _pread(fd, tail_size, file_size - tail_size, path, "end record")
    pos = tail.rfind(EOCD_SIG)
    while pos >= 0:
        if pos + EOCD.size <= len(tail):
            fields = EOCD.unpack_from(tail, pos)
            # The comment must end exactly at the end of the file; a signature that happens
            # to appear inside a comment or data does not satisfy that.
            if pos + EOCD.size + fields[7] == len(tail):
                return file_size - tail_size + pos, fields
        pos = tail.rfind(EOCD_SIG, 0, pos)
    raise _corrupt(path, "no end-of-central-directory record; the file is truncated or not a zip")


def _directory_location(fd: int, file_size: int, path: str) -> tuple[int, int, int, int]:
    """(directory offset, directory size, entry count, end of the directory's allowed area)."""
    eocd_pos, (_, disk, cd_disk, _n_here, count, cd_size, cd_offset, _) = \
        _find_end_record(fd, file_size, path)
    limit = eocd_pos
    locator_pos = eocd_pos - ZIP64_LOCATOR.size
    locator = None
    if locator_pos >= 0:
        raw = _pread(fd, ZIP64_LOCATOR.size, locator_pos, path, "ZIP64 locator")
        if raw[:4] == ZIP64_LOCATOR_SIG:
            locator = ZIP64_LOCATOR.unpack(raw)
    if locator is not None:
        _, z_disk, z_offset, disks = locator
        if z_disk != 0 or disks > 1:
            raise _corrupt(path, f"split over {disks} disks")
        if z_offset + ZIP64_EOCD.size > locator_pos:
            raise _corrupt(path, f"ZIP64 end record offset {z_offset} is out of range")
        rec = ZIP64_EOCD.unpack(_pread(fd, ZIP64_EOCD.size, z_offset, path, "ZIP64 end record"))
        if rec[0] != ZIP64_EOCD_SIG:
            raise _corrupt(path, f"no ZIP64 end record at offset {z_offset}")
        _, _, _, _, disk, cd_disk, _n_here, count, cd_size, cd_offset = rec
        limit = z_offset
    elif 0xFFFFFFFF in (cd_size, cd_offset) or count == 0xFFFF:
        raise _corrupt(path, "ZIP64 sizes without a ZIP64 end record")
    if disk != 0 or cd_disk != 0:
        raise _corrupt(path, "split over several disks")
    if cd_offset + cd_size > limit:
        raise _corrupt(path, f"central directory [{cd_offset}, {cd_offset + cd_size}) runs past "
                             f"its end record at {limit}")
    if cd_size > MAX_DIRECTORY_BYTES:
        raise _corrupt(path, f"central directory of {cd_size} bytes is implausibly large")
    if count * CENTRAL.size > cd_size:
        raise _corrupt(path, f"{count} members cannot fit in a {cd_size}-byte central directory")
    return cd_offset, cd_size, count, limit


def _zip64_values(extra: bytes, wanted: list[str], path: str, name: str) -> dict[str, int]:
    """The 8-byte values of the ZIP64 extra field for the fields that overflowed, in order."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        if tag == ZIP64_EXTRA_ID:
            if len(body) < 8 * len(wanted):
                raise _corrupt(path, f"member {name!r}: ZIP64 extra field too short")
            return {k: struct.unpack_from("<Q", body, 8 * i)[0] for i, k in enumerate(wanted)}
        pos += 4 + length
    raise _corrupt(path, f"member {name!r}: sizes overflow 32 bits but no ZIP64 extra field")


def _parse_central(raw: bytes, count: int,
                   path: str) -> list[tuple[str, int, int, int, int, int, int]]:
    """(name, flags, method, crc, compressed size, size, header offset) for each entry."""
    entries = []
    pos = 0
    for _ in range(count):
        if pos + CENTRAL.size > len(raw):
            raise _corrupt(path, "central directory ends in the middle of an entry")
        (sig, _made, need, flags, method, _time, _date, crc, csize, usize, name_len, extra_len,
         comment_len, disk, _iattr, _eattr, offset) = CENTRAL.unpack_from(raw, pos)
        if sig != CENTRAL_SIG:
            raise _corrupt(path, f"bad central directory entry at directory offset {pos}")
        start = pos + CENTRAL.size
        end = start + name_len + extra_len + comment_len
        if end > len(raw):
            raise _corrupt(path, "central directory entry runs past the directory")
        name = raw[start:start + name_len].decode("utf-8", "surrogateescape")
        extra = raw[start + name_len:start + name_len + extra_len]
        wanted = [k for k, v in (("usize", usize), ("csize", csize), ("offset", offset))
                  if v == 0xFFFFFFFF]
        if disk == 0xFFFF:
            wanted.append("disk")
        if wanted:
            big = _zip64_values(extra, wanted, path, name)
            usize, csize = big.get("usize", usize), big.get("csize", csize)
            offset, disk = big.get("offset", offset), big.get("disk", disk)
        if disk != 0:
            raise _corrupt(path, f"member {name!r} is on another disk")
        if need > MAX_VERSION_NEEDED:
            raise _corrupt(path, f"member {name!r} needs zip version {need // 10}.{need % 10}")
        entries.append((name, flags, method, crc, csize, usize, offset))
        pos = end
    return entries


def _central_entries(fd: int, file_size: int,
                     path: str) -> tuple[int, list[tuple[str, int, int, int, int, int, int]]]:
    """Where the central directory starts, and its parsed entries (see _parse_central)."""
    cd_offset, cd_size, count, _ = _directory_location(fd, file_size, path)
    raw = _pread(fd, cd_size, cd_offset, path, "central directory")
    return cd_offset, _parse_central(raw, count, path)


def member_names(fd: int, path: str) -> list[str]:
    """The member names in directory order, without read_directory's checks of each entry."""
    return [entry[0] for entry in _central_entries(fd, os.fstat(fd).st_size, path)[1]]


def read_directory(fd: int, path: str) -> Directory:
    """Every member of the archive open on ``fd``, with its data offset, checked."""
    file_size = os.fstat(fd).st_size
    cd_offset, entries = _central_entries(fd, file_size, path)
    members: dict[str, Member] = {}
    order: list[str] = []
    for name, flags, method, crc, csize, usize, offset in entries:
        if name in members:
            raise _corrupt(path, f"member {name!r} appears twice")
        if flags & 0x1:
            raise UnsupportedError(f"{path}: member {name!r} is encrypted")
        if method == 0 and csize != usize:
            raise _corrupt(path, f"stored member {name!r} has two different sizes")
        members[name] = Member(name, offset, -1, csize, crc, method)
        order.append(name)
    return Directory(path, file_size, members, order, cd_offset)


def locate(fd: int, directory: Directory, names: list[str]) -> dict[str, Member]:
    """Where the data of each of ``names`` starts, from its local header; all checked.

    Only the members ckconv reads are located (one small read each). They must be stored,
    lie before the central directory, and not overlap one another: overlapping members
    would let a tiny file stand for terabytes of tensors.
    """
    path = directory.path
    located: dict[str, Member] = {}
    for name in names:
        m = directory.members[name]
        if m.method != 0:
            # torch.load(mmap=True) would even map the compressed bytes as if they were the
            # tensor's (torch 2.13 returns garbage): refuse rather than fall back.
            raise UnsupportedError(f"{path}: member {name!r} is compressed (method {m.method}); "
                                   "torch.save stores members uncompressed and ckconv reads "
                                   "them in place: save the file again with torch.save")
        raw = _pread(fd, LOCAL.size, m.header_offset, path, f"local header of {name!r}")
        sig, _need, _flags, _method, _time, _date, _crc, _csize, _usize, name_len, extra_len = \
            LOCAL.unpack(raw)
        if sig != LOCAL_SIG:
            raise _corrupt(path, f"no local header for member {name!r} at offset {m.header_offset}")
        local_name = _pread(fd, name_len, m.header_offset + LOCAL.size, path, f"name of {name!r}")
        if local_name.decode("utf-8", "surrogateescape") != name:
            raise _corrupt(path, f"local header at {m.header_offset} names another member than "
                                 f"{name!r}")
        data_offset = m.header_offset + LOCAL.size + name_len + extra_len
        if data_offset + m.size > directory.data_limit:
            raise _corrupt(path, f"member {name!r} ({m.size} bytes at offset {data_offset}) runs "
                                 f"past the start of the central directory at "
                                 f"{directory.data_limit}")
        located[name] = Member(name, m.header_offset, data_offset, m.size, m.crc32, m.method)
    spans = sorted((m.header_offset, m.data_offset + m.size, m.name) for m in located.values())
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            raise _corrupt(path, f"members {first!r} and {second!r} overlap")
    return located
