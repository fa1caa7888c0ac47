"""Errors a boot path reports about the user's files (one clear line each),
and the one reader for every file a user names (kernels, modules, ROMs, disk
images, session files, TOML configurations).

Only regular files are read: a directory, a FIFO (which would block for
ever), a device such as /dev/zero (which never ends) or a socket is refused
before anything is read, and so is a file larger than the caller's limit.
"""

from __future__ import annotations

import os
import stat

MAX_KERNEL_SIZE = 256 << 20          # kernels and modules are read whole into memory


class BootError(Exception):
    """A kernel, disk image or ROM that cannot be booted; the message says why."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is a special file"


def open_user_file(path, what: str, limit: int | None = None, writable: bool = False,
                   error: type[Exception] = BootError) -> int:
    """An open file descriptor (read-only, or read-write with ``writable``)
    of the user's regular file ``path``, checked to be at most ``limit``
    bytes; otherwise one clear ``error`` line.  Opening never blocks (a FIFO
    is opened non-blocking and then refused)."""
    path = os.fspath(path)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what} file") from None
    except (OSError, ValueError) as e:          # ValueError: an embedded NUL in the path
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise error(f"{path}: cannot {'open' if writable else 'read'} {what} ({reason})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: {_kind(st.st_mode)}, not a {what} file")
    try:
        st = os.fstat(fd)                        # the file opened, not the one looked at
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: {_kind(st.st_mode)}, not a {what} file")
        if limit is not None and st.st_size > limit:
            raise error(f"{path}: {what} file is {st.st_size} bytes, more than the "
                        f"{_size(limit)} a {what} may have")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: str, what: str, limit: int | None = MAX_KERNEL_SIZE,
              error: type[Exception] = BootError) -> bytes:
    """The bytes of a user's regular file (at most ``limit`` + 1 of them, so
    a caller can tell a file that grew past its limit), or one clear line:
    "no such kernel file", "is a directory, not a kernel file", "is a FIFO
    (named pipe), not a kernel file", "cannot read kernel (…)"."""
    fd = open_user_file(path, what, limit, error=error)
    try:
        with os.fdopen(fd, "rb", closefd=True) as f:
            return f.read() if limit is None else f.read(limit + 1)
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror or e})") from None


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"
