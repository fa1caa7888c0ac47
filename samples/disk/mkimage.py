"""Writes the disk sample's test image: 128 sectors, each starting with
"TVMM SECTOR nnnn" and filled with (7 * sector + offset) & 0xFF after it.

    python3 samples/disk/mkimage.py samples/build/disk.img
"""

import sys

SECTORS = 128


def sector(n: int) -> bytes:
    head = f"TVMM SECTOR {n:04d}".encode()
    return head + bytes((7 * n + i) & 0xFF for i in range(len(head), 512))


def image() -> bytes:
    return b"".join(sector(n) for n in range(SECTORS))


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(image())
