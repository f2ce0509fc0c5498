"""Writes seed inputs for the store_value target: an image record, a failure
record of each format and a tag score, in bincode 2's standard encoding
(schema/store.md), to the folder given as the first argument."""

import struct
import sys
from pathlib import Path


def varint(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfb" + struct.pack("<H", n)
    if n < 1 << 32:
        return b"\xfc" + struct.pack("<I", n)
    return b"\xfd" + struct.pack("<Q", n)


def signed(n):
    return varint((n << 1) ^ (n >> 63) if n < 0 else n << 1)


def text(s):
    data = s.encode()
    return varint(len(data)) + data


t = 1_700_000_000_000_000_000
record = (
    varint(7)  # id
    + varint(1) + text("/photos/cat.jpg") + signed(t)  # files: path, mtime
    + bytes(range(32))  # content hash
    + varint(24_682) + varint(640) + varint(427)  # byte size, width, height
    + varint(1)  # format code (JPEG)
    + signed(t)  # added
    + varint(1) + text("cat") + struct.pack("<f", 0.9)  # tags
    + varint(4) + b"".join(struct.pack("<f", x) for x in (0.5, -0.5, 0.5, -0.5))
    + varint(3) + varint(2)  # seq, vector_seq
)
failure = varint(2) + text("not a supported image") + varint(12) + signed(t) + signed(t)
failure_v1 = text("/photos/x.jpg: not a supported image") + varint(12) + signed(t) + signed(t)
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for name, data in [
    ("record", record),
    ("failure", failure),
    ("failure_v1", failure_v1),
    ("tag_score", struct.pack("<f", 0.25)),
]:
    (out / name).write_bytes(data)
